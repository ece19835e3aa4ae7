"""The in-memory link index: per-field agreement levels of each candidate, never values."""

from __future__ import annotations

import pytest

from ipvi.config import load_config
from linkage.incremental import LinkIndex
from linkage.linker import Linker
from linkage.settings import LinkageSettings
from synth.mentions import generate_mentions


@pytest.fixture(scope="module")
def indexed():
    mentions, truth = generate_mentions(1200, seed=7)
    settings = LinkageSettings.from_config(load_config().linkage)
    fields = mentions.drop(columns=["record_id", "race", "ethnicity"])
    linker = Linker(settings)
    result = linker.run(fields)
    return mentions, truth.to_numpy(), settings, linker.standardize(fields), result.model


def _swapped(dob: str) -> str:
    year, month, day = dob.split("-")
    return f"{year}-{day}-{month}"


def test_candidates_carry_level_labels_not_values(indexed):
    mentions, persons, settings, standardized, model = indexed
    dob = mentions["dob"]
    # A well-formed dob whose day could be a month (so swapping gives another valid date).
    swappable = dob.str.fullmatch(r"\d{4}-\d{2}-\d{2}") & (dob.str[8:10] <= "12")
    swappable &= (dob.str[5:7] != dob.str[8:10]) & (mentions["street"] != "")
    row = mentions[swappable].iloc[0]
    person = persons[row.name]
    index = LinkIndex(settings).fit(standardized, persons, model)
    mention = row.drop(["record_id", "race", "ethnicity"]).to_dict()
    mention["dob"] = _swapped(mention["dob"])
    match = index.link(mention)
    assert match.person_id == person
    labels = {
        c.name: {label.removeprefix(f"{c.name}: ") for label in c.level_labels()}
        for c in settings.comparisons
    }
    best = match.candidates[0]
    assert set(best["agreement"]) == set(labels)
    assert best["agreement"]["dob"] == "day and month swapped"
    assert best["agreement"]["last_name"] == "exact"
    stored = set(mentions.loc[persons == person].drop(columns="record_id").to_numpy().ravel())
    for candidate in match.candidates:
        for name, level in candidate["agreement"].items():
            assert level in labels[name]
            assert level not in stored
