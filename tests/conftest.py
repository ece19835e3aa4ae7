"""Shared fixtures: a registry URL on SQLite and, when IPVI_TEST_POSTGRES_URL is set, PostgreSQL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from ipvi.db import make_engine

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "data_samples"
POSTGRES_URL = os.environ.get("IPVI_TEST_POSTGRES_URL")


def _postgres_schema_url(schema: str) -> str:
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not POSTGRES_URL, reason="IPVI_TEST_POSTGRES_URL not set"),
            ],
        ),
    ]
)
def db_url(request, tmp_path) -> str:
    """An empty registry database URL, on each available engine (a fresh schema on PostgreSQL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    yield _postgres_schema_url(schema)
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """An empty SQLite registry URL, for tests that need only one engine."""
    return f"sqlite:///{tmp_path / 'registry.sqlite'}"


# The site secret every test's commands and servers use (tests of the key file itself unset it).
TEST_SITE_KEY = "test-site-key-" + "0123456789abcdef" * 3


@pytest.fixture(scope="session", autouse=True)
def site_key_env():
    """``IPVI_AUDIT_KEY`` set for the whole session (servers and commands started by tests
    inherit it), so no test writes a key file into the project and all agree on the key."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IPVI_AUDIT_KEY", TEST_SITE_KEY)
        yield


@pytest.fixture
def site_key():
    """The test's site key (:mod:`ipvi.site_key`)."""
    from ipvi.site_key import SiteKey

    return SiteKey(secret=TEST_SITE_KEY.encode(), source="IPVI_AUDIT_KEY")


# --------------------------------------------------------------------------- the sample


@pytest.fixture(scope="session")
def linked_sample(tmp_path_factory) -> Path:
    """The shipped sample ingested and linked by the local engine from the command line, with
    the default settings: the registry's SQLite file, shared by the modules that start from
    it. Tests copy it and never change it."""
    from tests.cli_support import run_ipvi

    registry = tmp_path_factory.mktemp("linked-sample") / "registry.sqlite"
    env = {"IPVI_DATABASE_URL": f"sqlite:///{registry}"}
    run_ipvi(["ingest", str(SAMPLE_DIR)], env)
    run_ipvi(["link", "--no-link-index"], env)
    return registry


# --------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    """A registry built by the real pipeline, shared by every module that needs linked persons
    (:mod:`tests.pipeline_support`)."""
    from tests.pipeline_support import build_pipeline

    return build_pipeline(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="session")
def pipeline_server(pipeline):
    """A server on :func:`pipeline`'s registry, its link index loaded."""
    import time

    import httpx

    from tests.pipeline_support import SERVER
    from tests.serving_support import running_server

    with running_server(
        pipeline["folder"], pipeline["store"], pipeline["url"], **SERVER
    ) as process:
        deadline = time.monotonic() + 300
        while httpx.get(f"{process.url}/readyz").json()["linkage_run_id"] is None:
            assert time.monotonic() < deadline, process.tail()
            time.sleep(1)
        yield process


# --------------------------------------------------------------------------- Spark


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory):
    """A standalone Spark master and worker on loopback (:mod:`tests.spark_support`), shared by
    the Spark tests of every module: starting one takes tens of seconds."""
    from tests.spark_support import start_cluster

    started = start_cluster(tmp_path_factory.mktemp("spark-cluster"))
    yield started
    started.stop()
