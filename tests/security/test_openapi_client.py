"""What an integrator's tooling sees: the OpenAPI document at /docs.json validates, and a client
generated from it by ``openapi-python-client`` has a typed request model for every endpoint and
calls each of them, through those models, against a real server on a linked registry."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from sqlalchemy import select

from ipvi.db import make_engine
from ipvi.tables.linkage import crosswalk
from serving.schemas import SCORE_EXAMPLE
from tests.pipeline_support import fresh_keys, identifiers, victim_share

pytestmark = [pytest.mark.security, pytest.mark.service, pytest.mark.slow]

PACKAGE = "ipvi_generated_client"


@pytest.fixture(scope="module")
def document(pipeline_server) -> dict:
    return httpx.get(f"{pipeline_server.url}/docs.json").json()


@pytest.fixture(scope="module")
def client_package(document, tmp_path_factory):
    """The client ``openapi-python-client`` generates from the served document, imported."""
    import json

    folder = tmp_path_factory.mktemp("client")
    (folder / "openapi.json").write_text(json.dumps(document))
    (folder / "config.yaml").write_text("post_hooks: []\n")  # no formatting: only the code
    generator = Path(sys.executable).with_name("openapi-python-client")
    subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(folder / "openapi.json"),
            "--meta",
            "none",
            "--config",
            str(folder / "config.yaml"),
            "--output-path",
            str(folder / PACKAGE),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def _operations(package) -> dict[str, object]:
    """Each generated operation module, by the path it calls."""
    found = {}
    api = importlib.import_module(f"{package.__name__}.api")
    for info in pkgutil.walk_packages(api.__path__, prefix=f"{api.__name__}."):
        module = importlib.import_module(info.name)
        if hasattr(module, "sync_detailed"):
            found[re.search(r'"url": "([^"]+)"', inspect.getsource(module)).group(1)] = module
    return found


def test_the_document_validates_as_openapi_3_1(document):
    validate(document)  # raises with the first problem: the probe's `as_of` among them
    as_of = document["components"]["schemas"]["ScoreRequest"]["properties"]["as_of"]
    assert {"type": "null"} in as_of["anyOf"]


def test_the_generated_client_is_typed_and_calls_every_endpoint(
    client_package, pipeline, pipeline_server
):
    operations = _operations(client_package)
    models = importlib.import_module(f"{PACKAGE}.models")
    keys = fresh_keys(pipeline["url"], ["admin", "monitoring"])
    client = client_package.AuthenticatedClient(
        base_url=pipeline_server.url, token=keys["admin"]["Authorization"].split()[1]
    )
    # Every request body is one of the client's models, never Any or a dict.
    for path, module in operations.items():
        body = inspect.signature(module.sync_detailed).parameters.get("body")
        if path.startswith("/v1/"):
            assert body is not None and inspect.isclass(body.annotation), path
            assert body.annotation.__module__.startswith(f"{PACKAGE}.models"), path
    assert {"/v1/score", "/v1/tier", "/v1/link", "/v1/decision"} <= set(operations)

    engine = make_engine(pipeline["url"])
    person, identifiers_body = identifiers(
        engine, crosswalk.c.person_id.in_(victim_share(upper=0.5))
    )
    with engine.connect() as connection:
        assert connection.execute(select(crosswalk).where(crosswalk.c.person_id == person)).first()
    engine.dispose()
    as_of = datetime(2026, 1, 1, tzinfo=UTC)

    by_id = operations["/v1/score"].sync(
        client=client, body=models.ScoreRequest(person_ids=[person], as_of=as_of)
    )
    assert isinstance(by_id, models.ScoreResponse), by_id
    assert all(isinstance(r, models.ScoreResult) for r in by_id.results)
    inline = operations["/v1/score"].sync(
        client=client, body=models.ScoreRequest.from_dict(SCORE_EXAMPLE)
    )
    assert isinstance(inline, models.ScoreResponse)
    assert isinstance(inline.results[0].probability, float)
    assert isinstance(inline.results[0].as_of, datetime)

    tiers = operations["/v1/tier"].sync(
        client=client, body=models.TierRequest(person_ids=[person], as_of=as_of)
    )
    assert isinstance(tiers, models.TierResponse), tiers

    link = operations["/v1/link"].sync(
        client=client, body=models.LinkRequest.from_dict(identifiers_body)
    )
    assert isinstance(link, models.LinkResponse), link
    assert person in [c.person_id for c in link.candidates]

    decision = operations["/v1/decision"].sync(
        client=client,
        body=models.DecisionRequest(
            decision_id=f"d-{uuid.uuid4().hex}",
            person_id=person,
            action=models.DecisionRequestAction.LETTER,
            tier_decision=models.DecisionRequestTierDecision.FOLLOWED,
            advocate_contacted_before_notification=True,
        ),
    )
    assert isinstance(decision, models.DecisionResponse), decision
    assert decision.replayed is False

    refused = operations["/v1/score"].sync(
        client=client, body=models.ScoreRequest(person_ids=["PNOBODY"], as_of=as_of)
    )
    assert isinstance(refused, models.ErrorResponse) and refused.field == "person_ids.0"

    # The operations without a body answer too (/metrics with a monitoring key).
    monitoring = client_package.AuthenticatedClient(
        base_url=pipeline_server.url, token=keys["monitoring"]["Authorization"].split()[1]
    )
    for path, module in operations.items():
        if not path.startswith("/v1/"):
            answer = module.sync_detailed(client=monitoring)
            assert answer.status_code == 200, (path, answer.content[:200])
