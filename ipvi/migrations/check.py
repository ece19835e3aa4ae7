"""CI check: the migrations have a single head and upgrade an empty database on both engines.

Usage: ``python -m ipvi.migrations.check [POSTGRES_URL]``. SQLite is always checked (in a
temporary file); PostgreSQL when a URL is given.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from ipvi.db import alembic_config, make_engine, upgrade_to_head


def check(url: str) -> list[str]:
    """Upgrade ``url`` from empty to head and return the tables it then holds."""
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    upgrade_to_head(engine)
    tables = sorted(inspect(engine).get_table_names())
    engine.dispose()
    return tables


def main(argv: list[str]) -> int:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    if len(heads) != 1:
        print(f"migrations: expected one alembic head, found {len(heads)}: {heads}")
        return 1
    with tempfile.TemporaryDirectory() as folder:
        urls = [f"sqlite:///{Path(folder) / 'check.sqlite'}", *argv]
        for url in urls:
            tables = check(url)
            print(f"migrations: {url.split(':')[0]} upgraded to {heads[0]}: {len(tables)} tables")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
