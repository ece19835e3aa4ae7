"""Registry tables, one module per stage, all on one :data:`metadata`.

Stages import the module of the tables they read or write. The alembic migrations in
:mod:`ipvi.migrations` are the source of truth for the database; these objects mirror them for
queries.
"""

from sqlalchemy import MetaData

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)
