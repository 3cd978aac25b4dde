"""What `encore beat` runs, in one place. Every job is safe to run twice at the same
moment (it claims rows in the database, or its update is guarded by the row's state),
so a second scheduler costs work, never a duplicate message.

| job | task | every | safe twice because |
| --- | --- | --- | --- |
| relay tick | tasks.relay.relay | 5 s | claims due rows with one UPDATE (SKIP LOCKED) |
| stream sweep | tasks.plan.sweep_streams | 60 s | one planner per stream (a lease) |
| campaign runner | tasks.campaigns.run_due_campaigns | every minute, on the minute | a run is a unique (campaign, scheduled time) row with a lease |
| coupon expiry | tasks.expiry.expire_overdue | 60 s | UPDATE … WHERE state = 'scheduled' |
| code sync | tasks.sync.sync_codes | 10 s | claims coupons with a lease (SKIP LOCKED); creation is idempotent by the code |
| code removal | tasks.sync.remove_codes | 15 s | a lease on code_removal_due_at; removing a code not in the shop is a no-op |
"""

from celery.schedules import crontab

RELAY_TICK_SECONDS = 5.0
"""How late a retry or a quiet-hours delivery can start past its due_at when no
commit kicked the relay; 5 s keeps p99 latency low at one cheap query per tick."""
SWEEP_TICK_SECONDS = 60.0
"""Stream orders wait 6 h for stream.ended; a minute of lag on that is invisible."""
CAMPAIGN_TICK = crontab()
"""Every minute on the minute, cron's own resolution: a campaign scheduled at 10:00
starts at 10:00 (plus the worker's pickup), and a fresh beat ticks within a minute."""
EXPIRY_TICK_SECONDS = 60.0
"""Only bookkeeping (the sender expires what it claims late): a minute is plenty."""

CODE_SYNC_TICK_SECONDS = 10.0
"""Planning rings the sync after each commit; the tick only retries transient failures
(their backoff starts at ENCORE_RETRY_BASE_SECONDS) and takes over from a dead worker."""
CODE_REMOVAL_TICK_SECONDS = 15.0
"""A void coupon's code stops working in its shop within a minute (SPEC rule 15): a
tick every 15 s leaves room for a slow shop and one retry."""

BEAT_SCHEDULE = {
    "relay": {"task": "tasks.relay.relay", "schedule": RELAY_TICK_SECONDS},
    "sweep-streams": {"task": "tasks.plan.sweep_streams", "schedule": SWEEP_TICK_SECONDS},
    "campaign-runner": {"task": "tasks.campaigns.run_due_campaigns", "schedule": CAMPAIGN_TICK},
    "coupon-expiry": {"task": "tasks.expiry.expire_overdue", "schedule": EXPIRY_TICK_SECONDS},
    "code-sync": {"task": "tasks.sync.sync_codes", "schedule": CODE_SYNC_TICK_SECONDS},
    "code-removal": {"task": "tasks.sync.remove_codes", "schedule": CODE_REMOVAL_TICK_SECONDS},
}
