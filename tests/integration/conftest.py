"""Fixtures of the subprocess tier."""

from __future__ import annotations

import pytest

from tests.support import running_stack


@pytest.fixture()
def stack(monkeypatch, tmp_path, postgres_url, redis_url, request):
    """A real worker on PostgreSQL and Redis; `request.param` (indirect) adds settings."""
    env = getattr(request, "param", None) or {}
    with running_stack(monkeypatch, data_dir=tmp_path, database_url=postgres_url, broker_url=redis_url,
                       env=env) as running:
        yield running
