"""``ipvi serve`` starts the same real server as ``bentoml serve``, with a key required."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest

from serving.launch import free_port
from serving.schemas import SCORE_EXAMPLE
from synth.champion import MODEL_NAME
from tests.cli_support import ipvi
from tests.serving_support import add_keys, champion_store, write_config

pytestmark = pytest.mark.service


@pytest.mark.slow
def test_ipvi_serve_starts_the_service_on_loopback(tmp_path, tmp_path_factory):
    store = champion_store(tmp_path_factory.getbasetemp())
    database_url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    env = {
        **os.environ,
        "IPVI_CONFIG": str(write_config(tmp_path, database_url)),
        "IPVI_DATABASE_URL": database_url,
        "MLFLOW_TRACKING_URI": store["tracking_uri"],
    }
    key = add_keys(database_url, ["scoring"])["scoring"]
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "ipvi.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "ipvi serve not ready in 120 s"
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert httpx.post(f"{url}/v1/score", json=SCORE_EXAMPLE, timeout=30).status_code == 401
        answer = httpx.post(
            f"{url}/v1/score",
            json=SCORE_EXAMPLE,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        result = answer.json()["results"][0]
        assert (
            result["tier"] and result["band"] and result["model_version"] == store["model_version"]
        )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def test_ipvi_serve_refuses_a_public_address_without_tls():
    completed = subprocess.run(
        [sys.executable, "-m", "ipvi.cli", "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 2
    assert "refusing to serve on 0.0.0.0 without TLS" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_version_trained_by_another_package_version_is_refused_by_serve_and_score_all(
    tmp_path, tmp_path_factory
):
    """The service and the batch tier list refuse the same version, with the same message:
    its features would be rebuilt by code other than the code it was trained on."""
    from mlflow import MlflowClient

    store = champion_store(tmp_path_factory.getbasetemp())
    shutil.copy(store["tracking_uri"].removeprefix("sqlite:///"), tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_model_version_tag(
        MODEL_NAME, store["model_version"], "package_version", "0.0.1"
    )
    env = {"IPVI_DATABASE_URL": f"sqlite:///{tmp_path / 'r.sqlite'}", "MLFLOW_TRACKING_URI": uri}
    for args in (["serve"], ["score", "--all", "--as-of", "2025-01-01"]):
        refused = ipvi(args, env, timeout=120, cwd=tmp_path)
        assert refused.returncode == 2, (args, refused.stderr[-2000:])
        assert f"model version {store['model_version']} was trained with ipvi 0.0.1" in (
            refused.stderr
        )
        assert "Traceback" not in refused.stderr
