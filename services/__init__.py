"""Use cases: each takes a session (or a runtime) and `now`, calls the pure
domain in `coupons/`, and stores the result. Celery tasks and the command line
are thin shells around these."""
