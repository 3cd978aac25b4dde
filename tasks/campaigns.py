"""Campaign runner (every minute from beat) and one campaign run."""

from services.campaigns import run_named, start_due_runs
from services.ports import RUN_CAMPAIGN, RUN_DUE_CAMPAIGNS
from tasks.app import RETRY_ON_DATABASE_ERRORS, app, runtime


@app.task(name=RUN_DUE_CAMPAIGNS, **RETRY_ON_DATABASE_ERRORS)
def run_due_campaigns() -> int:
    """Start each campaign occurrence that is due and not yet run (safe twice: runs are claimed)."""
    return start_due_runs(runtime())


@app.task(name=RUN_CAMPAIGN, **RETRY_ON_DATABASE_ERRORS)
def run_campaign(name: str, scheduled_at: str) -> str:
    return run_named(runtime(), name, scheduled_at)
