"""rcp benchmarks: `python -m bench` (see bench/run.py and bench/README.md) and standalone measurement scripts."""
