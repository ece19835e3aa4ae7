"""The registry database: one alembic head, an upgrade from empty on both engines, and the
ingest migration in step with the table definitions the code queries, and the issued scores'
indexes the monitor's reads rely on."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from ipvi.db import alembic_config, make_engine, open_registry
from ipvi.migrations.check import main as check_main
from ipvi.tables import ingest as ingest_tables
from ipvi.tables import metadata
from ipvi.tables.monitoring import issued_scores


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def test_migrations_form_one_chain_from_every_file_to_a_single_head():
    script = _script()
    heads = script.get_heads()
    assert len(heads) == 1
    revisions = list(script.walk_revisions())  # from the head down
    assert revisions[0].revision == heads[0]
    for newer, older in zip(revisions, revisions[1:], strict=False):
        assert newer.down_revision == older.revision, newer.revision
    assert revisions[-1].down_revision is None
    # Every migration file is on that chain, named after its revision.
    files = sorted(path.name for path in Path(script.versions).glob("*.py"))
    assert [name.split("_")[0] for name in files] == sorted(r.revision for r in revisions)


def test_upgrade_from_empty_creates_the_ingest_tables_as_declared(db_url):
    engine = open_registry(db_url)
    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    declared = {name: metadata.tables[name] for name in _ingest_names()}
    assert set(declared) <= tables
    for name, table in declared.items():
        columns = {column["name"]: column for column in inspector.get_columns(name)}
        assert list(columns) == [column.name for column in table.columns], name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, f"{name}.{column.name}"
        primary = inspector.get_pk_constraint(name)["constrained_columns"]
        assert primary == [column.name for column in table.primary_key.columns], name
        indexes = {tuple(index["column_names"]) for index in inspector.get_indexes(name)}
        assert indexes == {tuple(c.name for c in index.columns) for index in table.indexes}, name
    # Opening it again is a no-op at the head.
    open_registry(db_url).dispose()
    engine.dispose()


def test_issued_scores_are_migrated_with_the_indexes_declared(db_url):
    # The monitor finds each offence's first score through ix_issued_scores_offence.
    engine = open_registry(db_url)
    migrated = {
        index["name"]: index["column_names"]
        for index in inspect(engine).get_indexes("issued_scores")
    }
    engine.dispose()
    assert migrated == {
        index.name: [c.name for c in index.columns] for index in issued_scores.indexes
    }


def _ingest_names() -> set[str]:
    return {
        table.name
        for table in vars(ingest_tables).values()
        if getattr(table, "metadata", None) is metadata
    }


def test_ingest_migration_downgrades_to_empty(sqlite_url):
    engine = make_engine(sqlite_url)
    config = alembic_config(sqlite_url)
    command.upgrade(config, "0001")
    assert _ingest_names() <= set(inspect(engine).get_table_names())
    command.downgrade(config, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_ci_check_upgrades_sqlite_from_empty(capsys):
    assert check_main([]) == 0
    assert f"sqlite upgraded to {_script().get_current_head()}" in capsys.readouterr().out
