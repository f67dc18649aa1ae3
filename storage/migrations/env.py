"""Alembic environment: given a live connection by storage.migrate, or, from the
`alembic` command line (alembic.ini), connected to $DATABASE_URL or the ini's URL."""

from __future__ import annotations

import logging.config
import os

from alembic import context
from sqlalchemy.engine import Connection

from storage.models import Base


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


config = context.config
if "connection" in config.attributes:
    run(config.attributes["connection"])
else:
    from storage.db import make_engine

    if config.config_file_name:
        logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    assert url, "set DATABASE_URL or sqlalchemy.url in alembic.ini"
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            run(connection)
    finally:
        engine.dispose()
