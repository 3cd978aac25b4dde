"""`python -m bench crash`: see bench/guarantees.py."""

from bench.guarantees import main_crash as main

__all__ = ["main"]
