"""`python -m bench outage`: see bench/guarantees.py."""

from bench.guarantees import main_outage as main

__all__ = ["main"]
