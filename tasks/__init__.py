"""Celery tasks: thin adapters that load by id, call a service, commit, and ring
the next doorbell. No logic lives here."""
