"""fastcore's benchmark suite: `python -m bench` from the repository root (see bench/README.md)."""
