"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL:
a column added to a model but forgotten in a migration (or the other way round) would
only show in production, where the database is upgraded rather than created."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from store.db import engine_for
from store.models import Base


def test_an_upgraded_database_matches_the_models(database_url):
    # Given a database created by the migrations alone
    engine = engine_for(database_url)
    # When it is compared with the models
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    # Then there is nothing a new migration would have to add, drop or change
    assert differences == []
