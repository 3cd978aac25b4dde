"""What `encore beat` runs. Every job is safe to run twice (it claims rows in
the database), so a second scheduler costs work, never a duplicate message."""

RELAY_TICK_SECONDS = 5.0
"""How late a retry or a quiet-hours delivery can start past its due_at when no
commit kicked the relay; 5 s keeps p99 latency low at one cheap query per tick."""
SWEEP_TICK_SECONDS = 60.0
"""Stream orders wait 6 h for stream.ended; a minute of lag on that is invisible."""

BEAT_SCHEDULE = {
    "relay": {"task": "tasks.relay.relay", "schedule": RELAY_TICK_SECONDS},
    "sweep-streams": {"task": "tasks.plan.sweep_streams", "schedule": SWEEP_TICK_SECONDS},
}
