"""The worker's side: the Celery app (`app.py`), the one module that knows the queues
(`doorbell.py`), and tasks that each hand their arguments to one use case with the
process's runtime. The use cases ring the next step themselves. No logic lives here."""
