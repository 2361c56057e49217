"""Live training metrics with DVCLive: each finished epoch's row of the training history,
logged to dvclive/ (metrics.json, plots/metrics/*.tsv) once its checkpoint is saved, so
`dvc exp show` and the VS Code DVC extension show a running experiment epoch by epoch.

The step is the epoch's number, taken from the checkpoint's history: when the stage starts,
the folder is cleared (DVCLive's default) and every epoch of that history is logged again,
so a resumed run continues the same series with no epoch twice and none missing, wherever a
kill came (DVCLive's own metrics.json can be an epoch ahead of the checkpoint). Only the
chief logs. dvclive/ is not a stage output: dvc.yaml lists it in its top-level metrics and
plots, so after a failed or killed run it shows the partial run while the stage's outputs
(metrics/train.json, plots/train/) stay the last good run's. In a git repository without a
commit DVCLive cannot start: the stage then trains without live metrics and says so.
"""

from __future__ import annotations

import sys

from emotion.errors import first_line

LIVE_DIR = "dvclive"
# History columns logged each epoch (the rest are timings and padding).
LOGGED = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
          "examples_per_second")


class LiveMetrics:
    """The live folder of one run of the train stage."""

    def __init__(self, history: list[dict]):
        """A fresh live folder holding the epochs of `history` (the checkpoint's)."""
        from dvclive import Live
        from scmrepo.exceptions import SCMError

        try:  # no experiment of its own (DVC runs the stage); no dvc.yaml (ours lists it)
            self.live = Live(LIVE_DIR, save_dvc_exp=False, dvcyaml=None, report=None)
        except SCMError as error:  # DVCLive 3.49 reads HEAD, which a new repo lacks
            print(f"note: no live metrics in this run ({first_line(error)}: DVCLive needs "
                  "a git commit); training goes on", file=sys.stderr, flush=True)
            self.live = None
        for row in history:
            self.log(row)

    def log(self, row: dict) -> None:
        """One finished epoch's metrics, at step = its number."""
        if self.live is None:
            return
        self.live.step = row["epoch"]
        for name in LOGGED:
            if name in row:
                self.live.log_metric(name, row[name])
        self.live.make_summary()
