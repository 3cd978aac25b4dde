"""Campaign runner (every minute from beat) and one campaign run."""

import logging
from datetime import datetime

from coupons.campaigns import iso_utc
from services.campaigns import due_runs, load_all, run_campaign as run_campaign_service
from services.bootstrap import current_runtime, utcnow
from store.db import session_scope
from tasks.app import RETRY_ON_DATABASE_ERRORS, app

log = logging.getLogger(__name__)


@app.task(name="tasks.plan.run_due_campaigns", **RETRY_ON_DATABASE_ERRORS)
def run_due_campaigns() -> int:
    """Start each campaign occurrence that is due and not yet run (safe twice: runs are claimed)."""
    runtime = current_runtime()
    campaigns, errors = load_all(runtime)
    for error in errors:
        log.error("campaign file skipped: %s", error)
    with session_scope(runtime.database_url) as session:
        due = due_runs(session, campaigns, utcnow())
    for run in due:
        run_campaign.delay(run.campaign.name, iso_utc(run.scheduled_at))
    return len(due)


@app.task(name="tasks.plan.run_campaign", **RETRY_ON_DATABASE_ERRORS)
def run_campaign(name: str, scheduled_at: str) -> str:
    from tasks.relay import relay

    runtime = current_runtime()
    campaigns, _ = load_all(runtime)
    campaign = next((c for c in campaigns if c.name == name), None)
    if campaign is None:
        log.error("campaign %s: no longer in the campaigns folder (or its file is broken); run skipped", name)
        return "unknown"
    outcome = run_campaign_service(runtime, campaign, datetime.fromisoformat(scheduled_at), utcnow,
                                   lambda scheduled: relay.delay())
    log.info("campaign %s run of %s: %s", name, scheduled_at, outcome)
    return outcome
