"""Alembic environment: runs migrations on the connection `casework.db.migrate` passes in."""

from alembic import context
from sqlalchemy import create_engine

from casework.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
else:  # `alembic` command line: connect with the URL from the config
    engine = create_engine(
        config.get_main_option("sqlalchemy.url"), future=True, hide_parameters=True
    )
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
