"""Developer tools that sit beside the pipeline (not DVC stages)."""
