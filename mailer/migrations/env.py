"""Alembic environment: runs migrations on the engine handed over by mailer.db."""

from alembic import context
from sqlmodel import SQLModel

import mailer.models  # noqa: F401  (registers the tables)

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=engine.dialect.name == "sqlite",
    )
    context.run_migrations()
