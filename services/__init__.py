"""Use cases: each takes the runtime (`bootstrap.py`) or a session and `now`, calls the
pure domain in `coupons/`, stores the result, and rings the next step through the
runtime's doorbell (`ports.py`). Celery tasks, the command line and the web edge are
thin shells around these."""
