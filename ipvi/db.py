"""The registry database: engines, sessions, and migration to the alembic head.

SQLite by default, PostgreSQL when configured. Every command that opens the registry calls
:func:`open_registry`, which creates the database if missing and upgrades it to the head, so a
user never runs migrations by hand. Table definitions live in :mod:`ipvi.tables`, one module per
stage; the migrations in :mod:`ipvi.migrations` create them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from ipvi.errors import IpviError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _sqlite_pragmas(lock_wait_seconds: float):
    def set_pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(lock_wait_seconds * 1000)}")
        cursor.close()

    return set_pragmas


def make_engine(url: str, *, lock_wait_seconds: float | None = None) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created and WAL mode switched on.

    ``lock_wait_seconds`` bounds how long a statement waits for another transaction's lock
    before failing (SQLite's busy timeout, 30 s by default; PostgreSQL's ``lock_timeout``, none
    by default): the service sets it to its own deadline, so that a write it could not answer
    in time does not go on waiting and commit later.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        wait = 30.0 if lock_wait_seconds is None else lock_wait_seconds
        engine = create_engine(url, connect_args={"timeout": wait})
        event.listen(engine, "connect", _sqlite_pragmas(wait))
        return engine
    if lock_wait_seconds is not None and parsed.get_backend_name() == "postgresql":
        given = parsed.query.get("options", "")
        options = f"{given} -c lock_timeout={int(lock_wait_seconds * 1000)}".strip()
        return create_engine(url, pool_pre_ping=True, connect_args={"options": options})
    return create_engine(url, pool_pre_ping=True)


def alembic_config(url: str):
    """An alembic ``Config`` pointing at the packaged migrations."""
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Create missing tables by running every migration up to the single head."""
    from alembic import command

    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_registry(url: str) -> Engine:
    """Open (create and upgrade if needed) the registry database at ``url``."""
    engine = make_engine(url)
    try:
        upgrade_to_head(engine)
    except Exception as error:  # a driver error here means the database cannot be reached
        engine.dispose()
        raise IpviError(
            f"cannot open the registry database ({make_url(url).render_as_string()}): "
            f"{type(error).__name__}: {str(error).splitlines()[0]}"
        ) from None
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = sessionmaker(bind=engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def compact(engine: Engine) -> bool:
    """Leave no trace of deleted rows in a SQLite file: rewrite it (``VACUUM``, which drops
    the free pages that still hold deleted rows' bytes) and empty its write-ahead log, whose
    old frames hold them too. Nothing on other engines (PostgreSQL reuses dead tuples' space
    on its own; a storage-level erasure there is the operator's). Returns whether it ran.
    """
    if engine.dialect.name != "sqlite":
        return False
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM")
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return True
