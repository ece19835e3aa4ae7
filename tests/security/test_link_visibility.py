"""What ``/v1/link`` must not reveal, on a registry built by the real pipeline: persons who are
mostly victims (to any key but an advocate's, whatever else they have), and whether an address
is confidential (its answer is the answer for an unknown address)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import case, func, select

from ipvi.db import make_engine
from ipvi.tables.ingest import mentions
from ipvi.tables.linkage import crosswalk
from tests.pipeline_support import fresh_keys, identifiers, victim_share

pytestmark = [pytest.mark.security, pytest.mark.service, pytest.mark.slow]


@pytest.fixture(scope="module")
def keys(pipeline, pipeline_server):
    return fresh_keys(pipeline["url"], ["scoring", "advocate", "admin"])


def test_mostly_victims_are_shown_to_advocates_only(pipeline, pipeline_server, keys):
    engine = make_engine(pipeline["url"])
    # Mostly a victim, yet with an arrest or charge: the probe saw 76 such persons.
    mostly = victim_share(lower=0.5, upper=1.0)
    person, body = identifiers(engine, crosswalk.c.person_id.in_(mostly))
    engine.dispose()
    url = f"{pipeline_server.url}/v1/link"
    shown = httpx.post(url, json=body, headers=keys["advocate"]).json()["candidates"]
    assert person in [c["person_id"] for c in shown]
    for role in ("scoring", "admin"):
        answer = httpx.post(url, json=body, headers=keys[role])
        assert answer.status_code == 200, answer.text
        assert person not in [c["person_id"] for c in answer.json()["candidates"]]


def test_a_confidential_address_answers_as_an_unknown_one(pipeline, pipeline_server, keys):
    engine = make_engine(pipeline["url"])
    with engine.connect() as connection:
        # A person (a victim: only victims' addresses are confidential) every one of whose
        # addressed mentions is confidential, so the best match is a confidential record.
        open_addresses = func.sum(
            case((mentions.c.street.is_not(None) & ~mentions.c.address_confidential, 1), else_=0)
        )
        addressed = func.sum(case((mentions.c.street.is_not(None), 1), else_=0))
        hidden = (
            select(crosswalk.c.person_id)
            .join(mentions, mentions.c.record_id == crosswalk.c.record_id)
            .group_by(crosswalk.c.person_id)
            .having(open_addresses == 0, addressed > 0)
        )
        person, body = identifiers(
            engine, crosswalk.c.person_id.in_(hidden) & mentions.c.street.is_not(None)
        )
        stored = connection.execute(
            select(mentions.c.street, mentions.c.city, mentions.c.zip)
            .join(crosswalk, mentions.c.record_id == crosswalk.c.record_id)
            .where(crosswalk.c.person_id == person, mentions.c.street.is_not(None))
        ).first()
    engine.dispose()
    address = {k: v for k, v in zip(("street", "city", "zip"), stored, strict=True) if v}
    url, advocate = f"{pipeline_server.url}/v1/link", keys["advocate"]
    with_address = httpx.post(url, json={**body, **address}, headers=advocate)
    without = httpx.post(url, json=body, headers=advocate)
    assert with_address.status_code == without.status_code == 200
    found = {c["person_id"]: c for c in with_address.json()["candidates"]}
    unknown = {c["person_id"]: c for c in without.json()["candidates"]}
    # The right address earns no weight and shows no level: nothing tells it apart.
    assert found[person] == unknown[person]
    assert "withheld" not in with_address.text
    for value in address.values():
        assert str(value).lower() not in with_address.text.lower()
