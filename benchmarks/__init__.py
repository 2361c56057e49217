"""Benchmarks: scripts that print figures (run by hand or by `make bench`), never tests."""
