"""Offences, labels, as-of features, tiers and bands on small hand-made histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ipvi.columns import Columns
from ipvi.config import ConfigError, load_config
from ipvi.errors import IpviError
from ipvi.schema import ETHNICITIES, EVENT_COLUMNS, MENTION_COLUMNS, RACES
from training.bands import assign_bands
from training.features import (
    DAYS_CAP,
    FEATURE_BY_NAME,
    FEATURES,
    compute_features,
    model_features,
    persons_table,
)
from training.labels import first_reoffence, label_index
from training.lethality import lethality_flags
from training.offences import assign_offences, index_offences, person_events
from training.tiers import assign_tiers, possible_dual_arrests

CONFIG = load_config().training


class History:
    """Builds canonical events, mentions and a crosswalk one event at a time."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.mentions: list[dict] = []
        self.links: dict[str, tuple[str, float]] = {}

    def add(
        self,
        person: str,
        event_type: str,
        day: str,
        *,
        recorded: str | None = None,
        role: str = "suspect",
        victim: str | None = None,
        link: float = 1.0,
        **fields,
    ) -> str:
        number = len(self.events)
        event_id = f"E{number}"
        row = dict.fromkeys(EVENT_COLUMNS)
        row.update(
            event_id=event_id,
            agency="PD",
            event_type=event_type,
            offense_date=pd.Timestamp(day),
            recorded_at=pd.Timestamp(recorded or day) + pd.Timedelta(hours=2),
            ipv=True,
            weapon=False,
            strangulation=False,
            injury=False,
            threat_to_kill=False,
            children_present=False,
        )
        row.update(fields)
        self.events.append(row)
        self._mention(f"R{number}", person, event_id, role, link)
        if victim:
            self._mention(f"R{number}v", victim, event_id, "victim", 1.0)
        return f"R{number}"

    def _mention(self, record_id, person, event_id, role, link) -> None:
        mention = dict.fromkeys(MENTION_COLUMNS)
        mention.update(
            record_id=record_id,
            agency="PD",
            event_id=event_id,
            role=role,
            dob=pd.Timestamp("1990-01-01").date(),
            sex="male",
        )
        self.mentions.append(mention)
        self.links[record_id] = (person, link)

    def frames(self):
        crosswalk = pd.DataFrame(
            [
                {"record_id": r, "person_id": p, "link_probability": q, "linkage_run_id": "t"}
                for r, (p, q) in self.links.items()
            ]
        )
        return pd.DataFrame(self.events), pd.DataFrame(self.mentions), crosswalk

    def tables(self) -> list[Columns]:
        return [Columns.from_frame(frame) for frame in self.frames()]

    def build(self, extract: str = "2030-01-01", **feature_options):
        """(person events, labelled index offences as a DataFrame, as-of features)."""
        events, mentions, crosswalk = self.tables()
        by_person = assign_offences(person_events(events, mentions, crosswalk))
        index = index_offences(by_person, CONFIG.decision_lag_days)
        labelled = label_index(
            index.to_frame(), by_person.to_frame(), extract_date=pd.Timestamp(extract)
        )
        options = {
            "count_charges": CONFIG.tiers.count_charges,
            "protective_order_days": CONFIG.protective_order_days,
            "probation_days": CONFIG.probation_days,
            **feature_options,
        }
        features = compute_features(
            Columns.from_frame(labelled),
            by_person,
            persons=persons_table(mentions, crosswalk),
            **options,
        )
        return by_person, labelled, features


def test_chain_is_one_offence_with_label_zero():
    h = History()
    h.add("P", "incident", "2020-03-01", case_ref="C1", victim="V")
    h.add("P", "arrest", "2020-03-02", role="arrestee")  # no case_ref: joined by date
    h.add("P", "charge", "2020-03-01", recorded="2020-03-05", case_ref="C1", role="defendant")
    h.add(
        "P",
        "disposition",
        "2020-03-01",
        recorded="2020-09-01",
        case_ref="C1",
        role="defendant",
        disposition="convicted",
    )
    by_person, labelled, features = h.build()
    offences = by_person["offence_id"]
    assert len(set(offences[offences >= 0])) == 1
    assert len(labelled) == 1
    assert labelled["label"].tolist() == [0]
    assert features.X["prior_ipv_offences"][0] == 0
    # A later offence sees exactly one prior offence (the chain), and a conviction.
    h.add("P", "incident", "2022-05-01", case_ref="C2", victim="V")
    _, labelled, features = h.build()
    assert len(labelled) == 2
    assert features.X["prior_ipv_offences"][1] == 1
    assert features.X["prior_ipv_convictions"][1] == 1
    assert features.X["prior_ipv_charges"][1] == 1
    assert features.X["days_since_last_ipv"][1] == pytest.approx(
        (pd.Timestamp("2022-05-04") - pd.Timestamp("2020-03-01")).days
    )


def test_conviction_recorded_later_is_not_a_conviction_then():
    h = History()
    h.add("P", "incident", "2020-01-10", case_ref="C1")
    h.add("P", "charge", "2020-01-10", case_ref="C1", role="defendant")
    # The conviction is entered after the next offence's decision date.
    h.add(
        "P",
        "disposition",
        "2020-01-10",
        recorded="2020-06-20",
        case_ref="C1",
        role="defendant",
        disposition="convicted",
    )
    h.add("P", "incident", "2020-06-01", case_ref="C2")
    _, labelled, features = h.build()
    second = labelled.index[labelled["index_date"] == pd.Timestamp("2020-06-01")][0]
    assert features.X["prior_ipv_charges"][second] == 1
    assert features.X["prior_ipv_convictions"][second] == 0
    assert labelled.loc[0, "label"] == 1  # the June incident is a new recorded offence


def test_count_charges_drops_dismissed_by_default():
    h = History()
    h.add("P", "incident", "2019-01-10", case_ref="C1")
    h.add("P", "charge", "2019-01-10", case_ref="C1", role="defendant")
    h.add(
        "P",
        "disposition",
        "2019-01-10",
        recorded="2019-04-01",
        case_ref="C1",
        role="defendant",
        disposition="dismissed",
    )
    h.add("P", "incident", "2020-06-01", case_ref="C2")
    h.add("P", "charge", "2020-06-01", case_ref="C2", role="defendant")
    _, labelled, default = h.build()
    _, _, everything = h.build(count_charges="all")
    assert default.X["ipv_charges"][1] == 1
    assert everything.X["ipv_charges"][1] == 2
    tiers_default = assign_tiers(default, CONFIG.tiers).to_frame()
    tiers_all = assign_tiers(everything, CONFIG.tiers).to_frame()
    assert tiers_default.loc[1, "tier"] == "C"
    assert tiers_all.loc[1, "tier"] == "B"


def test_label_window_custody_extension_recording_and_observation():
    def history(custody: bool, recorded_late: bool = False) -> History:
        h = History()
        h.add("P", "incident", "2020-01-01", case_ref="C1")
        if custody:
            h.add("P", "custody_start", "2020-02-01", role="arrestee", case_ref="C1")
            h.add("P", "custody_end", "2020-03-02", role="arrestee", ipv=False)
        # 380 days after the decision date: inside the window only with 30 custody days.
        day = (pd.Timestamp("2020-01-04") + pd.Timedelta(days=380)).strftime("%Y-%m-%d")
        recorded = "2021-12-01" if recorded_late else None
        h.add("P", "incident", day, case_ref="C2", recorded=recorded)
        return h

    by_person, labelled, _ = history(custody=True).build()
    assert labelled.loc[0, "label"] == 1
    # The first new offence (for survival curves) is the one that made the label positive.
    day = pd.Timestamp("2020-01-04") + pd.Timedelta(days=380)
    assert first_reoffence(labelled, by_person.to_frame()).tolist()[0] == day
    by_person, labelled, _ = history(custody=False).build()
    assert labelled.loc[0, "label"] == 0
    assert first_reoffence(labelled, by_person.to_frame()).isna().all()
    assert history(custody=True, recorded_late=True).build()[1].loc[0, "label"] == 0
    _, labelled, _ = history(custody=False).build(extract="2021-01-01")
    assert not labelled["observed"].any()


def test_index_offence_flags_and_status_features():
    h = History()
    h.add("P", "protective_order", "2020-01-01", role="respondent")
    h.add("P", "order_violation", "2020-02-01", role="respondent")
    h.add("P", "probation_start", "2020-02-10", role="probationer")
    h.add("P", "incident", "2020-03-01", strangulation=True, weapon=True, ipv=False)
    h.add("P", "incident", "2020-05-01", threat_to_kill=True, case_ref="C9", victim="V")
    _, labelled, features = h.build()
    row = labelled.index[labelled["index_date"] == pd.Timestamp("2020-05-01")][0]
    X = features.X.to_frame().loc[row]
    assert X["index_threat_to_kill"] == 1 and X["index_strangulation"] == 0
    assert X["strangulation_ever"] == 1 and X["weapon_ever"] == 1
    assert X["prior_nonipv_offences"] == 1
    assert X["protective_order_active"] == 1 and X["on_probation"] == 1
    assert X["po_violations"] == 1 and X["po_violations_1y"] == 1
    assert X["age"] == pytest.approx(30.3, abs=0.1)
    flags = lethality_flags(features.X.take([row]), CONFIG.lethality)
    assert flags[0] == ["strangulation", "weapon", "threat_to_kill", "protective_order_violation"]


def test_tier_reasons_cite_records_and_weak_links_make_provisional():
    h = History()
    first = h.add("P", "incident", "2019-01-10", case_ref="C1", link=0.6)
    h.add("P", "charge", "2019-01-10", case_ref="C1", role="defendant", link=0.6)
    h.add("P", "incident", "2020-06-01", case_ref="C2", weapon=True)
    second = h.add("P", "charge", "2020-06-01", case_ref="C2", role="defendant")
    _, _, features = h.build()
    tiers = assign_tiers(features, CONFIG.tiers).to_frame()
    assert tiers.loc[1, "tier"] == "A"
    reasons = tiers.loc[1, "tier_reasons"]
    assert first in reasons[0]["record_ids"] and second in reasons[0]["record_ids"]
    assert reasons[0]["weakest_link"] == pytest.approx(0.6)
    assert tiers.loc[1, "identity_review_required"] and tiers.loc[1, "provisional"]
    assert tiers.loc[0, "tier"] == "C" and not tiers.loc[0, "provisional"]


def test_possible_dual_arrest_is_provisional():
    h = History()
    h.add("P", "incident", "2020-06-01", case_ref="C1", victim="Q")
    partner = h.add("Q", "incident", "2020-06-01", case_ref="C1b", victim="P")
    by_person, labelled, features = h.build()
    dual = possible_dual_arrests(
        Columns.from_frame(labelled), by_person, days=CONFIG.tiers.dual_arrest_days
    )
    tiers = assign_tiers(features, CONFIG.tiers, dual_arrest=dual).to_frame()
    assert tiers["possible_dual_arrest"].all() and tiers["provisional"].all()
    p_row = labelled.index[labelled["person_id"] == "P"][0]
    assert partner in tiers.loc[p_row, "tier_reasons"][-1]["record_ids"]


def test_invalid_tier_rules_are_clear_errors():
    data = CONFIG.tiers.model_dump()
    data["rules"][0]["all"] = [["no_such_feature", ">=", 1]]
    bad = type(CONFIG.tiers).model_validate(data)
    h = History()
    h.add("P", "incident", "2020-06-01")
    _, _, features = h.build()
    with pytest.raises(IpviError, match="training.tiers.rules.0.all.*no_such_feature"):
        assign_tiers(features, bad)
    from ipvi.config import config_from_dict, default_config_dict

    raw = default_config_dict()
    raw["training"]["tiers"]["rules"][-1]["all"] = [["ipv_charges", ">=", 1]]
    with pytest.raises(ConfigError, match="training.tiers.rules"):
        config_from_dict(raw)
    raw = default_config_dict()
    raw["training"]["tiers"]["rules"][0]["all"] = [["ipv_charges", "~", 1]]
    with pytest.raises(ConfigError, match="training.tiers.rules.0.all"):
        config_from_dict(raw)


def test_bands_are_frozen_cut_points_and_never_risk_names():
    names, uses = assign_bands(np.array([0.0, 0.149, 0.15, 0.45, 0.99]), CONFIG.bands)
    assert names.tolist() == [
        "lower likelihood",
        "lower likelihood",
        "moderate likelihood",
        "higher likelihood",
        "highest likelihood",
    ]
    assert uses.tolist()[-2:] == ["outreach", "punitive"]
    from ipvi.config import config_from_dict, default_config_dict

    raw = default_config_dict()
    raw["training"]["bands"][0]["name"] = "low risk"
    with pytest.raises(ConfigError, match="training.bands"):
        config_from_dict(raw)


def test_protected_and_proxy_features_stay_out():
    columns = model_features(CONFIG.excluded_features)
    assert "sex_male" not in columns and "age" in columns
    assert "sex_male" in model_features([])
    with pytest.raises(IpviError, match="excluded_features"):
        model_features(["shoe_size"])


def test_race_and_ethnicity_never_change_a_feature():
    """Protected attributes serve only the audit: recoding every mention's race and ethnicity
    leaves every feature of every index offence (sex and zip proxies included) as it was."""
    from synth.histories import toy_history
    from training.pipeline import build_dataset

    events, mentions, crosswalk = toy_history(300, seed=4)

    def recoded(seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        return mentions.assign(
            race=rng.choice(sorted(RACES), len(mentions)),
            ethnicity=rng.choice(sorted(ETHNICITIES), len(mentions)),
        )

    first = build_dataset(events, recoded(1), crosswalk, CONFIG)
    second = build_dataset(events, recoded(2), crosswalk, CONFIG)
    assert len(first.features.X) > 100
    pd.testing.assert_frame_equal(first.features.X.to_frame(), second.features.X.to_frame())
    pd.testing.assert_frame_equal(first.index, second.index)


def test_reason_wording_is_true_for_every_value():
    # A reason that does not print its value must say what its "none" value means, or a
    # person without strangulation would read "strangulation now".
    assert all("{value" in f.reason or f.absent for f in FEATURES)
    offences = FEATURE_BY_NAME["prior_ipv_offences_1y"]
    assert offences.reason_text(1.0) == "1 prior IPV offence in the last 12 months"
    assert offences.reason_text(0.0) == "0 prior IPV offences in the last 12 months"
    assert offences.reason_text(3.0) == "3 prior IPV offences in the last 12 months"
    assert (
        FEATURE_BY_NAME["prior_ipv_charges"].reason_text(1.0) == "1 prior IPV offence charged ever"
    )
    assert FEATURE_BY_NAME["index_strangulation"].reason_text(1.0) == "strangulation now"
    assert FEATURE_BY_NAME["index_strangulation"].reason_text(0.0) == "no strangulation now"
    days = FEATURE_BY_NAME["days_since_last_ipv"]
    assert days.reason_text(12.0) == "last prior IPV offence 12 days before"
    assert days.reason_text(DAYS_CAP) == "no prior IPV offence in the last 3650 days"
    assert not any("(s)" in f.reason_text(2.0) or "{" in f.reason_text(2.0) for f in FEATURES)


def test_no_linked_persons_is_a_clear_error():
    h = History()
    h.add("P", "incident", "2020-06-01")
    events, mentions, crosswalk = h.tables()
    with pytest.raises(IpviError, match="no linked persons"):
        person_events(events, mentions, crosswalk.assign(record_id=["nobody"]))


def test_a_record_linked_twice_or_a_repeated_event_is_a_clear_error():
    h = History()
    h.add("P", "incident", "2020-06-01")
    h.add("P", "charge", "2020-06-02")
    events, mentions, crosswalk = h.frames()
    twice = pd.concat([crosswalk, crosswalk.iloc[:1].assign(person_id="Q")], ignore_index=True)
    tables = [Columns.from_frame(frame) for frame in (events, mentions, crosswalk, twice)]
    with pytest.raises(IpviError, match="crosswalk.record_id repeats an id"):
        person_events(*tables[:2], tables[3])
    repeated = Columns.from_frame(pd.concat([events, events.iloc[:1]], ignore_index=True))
    with pytest.raises(IpviError, match="events.event_id repeats an id"):
        person_events(repeated, *tables[1:3])


def test_overlapping_custody_counts_once_and_missing_release_closes_at_liberty():
    def label_with(spells: list[tuple[str, str | None]]) -> int:
        h = History()
        h.add("P", "incident", "2020-01-01", case_ref="C1")
        for start, end in spells:
            h.add("P", "custody_start", start, role="arrestee", ipv=False)
            if end:
                h.add("P", "custody_end", end, role="arrestee", ipv=False)
        day = (pd.Timestamp("2020-01-04") + pd.Timedelta(days=380)).strftime("%Y-%m-%d")
        h.add("P", "incident", day, case_ref="C2")
        return int(h.build()[1].loc[0, "label"])

    # Two records of the same 30 days (overlapping) extend the window by 30 days, not 60.
    assert label_with([("2020-02-01", "2020-03-02"), ("2020-02-05", "2020-03-01")]) == 1
    day = (pd.Timestamp("2020-01-04") + pd.Timedelta(days=380)).strftime("%Y-%m-%d")
    h = History()
    h.add("P", "incident", "2020-01-01", case_ref="C1")
    h.add("P", "custody_start", "2020-02-01", role="arrestee", ipv=False)  # no release record
    h.add("P", "incident", "2020-03-02", case_ref="C3", ipv=False)  # seen at liberty again
    h.add("P", "incident", day, case_ref="C2")
    _, labelled, _ = h.build()
    assert labelled.loc[0, "observed"] and labelled.loc[0, "label"] == 1


def test_nested_custody_counts_until_the_last_release():
    # A sentence starts while the arrest custody lasts and ends after it: custody runs from
    # the first booking to the last release (60 days), not to the first release (43 days).
    h = History()
    h.add("P", "incident", "2020-01-01", case_ref="C1")
    h.add("P", "custody_start", "2020-02-01", role="arrestee", ipv=False)
    h.add("P", "custody_start", "2020-03-01", role="arrestee", ipv=False)
    h.add("P", "custody_end", "2020-03-14", role="arrestee", ipv=False)
    h.add("P", "custody_end", "2020-04-01", role="arrestee", ipv=False)
    # 365 + 50 days after the decision date: inside the window only with all 60 custody days.
    day = (pd.Timestamp("2020-01-04") + pd.Timedelta(days=415)).strftime("%Y-%m-%d")
    h.add("P", "incident", day, case_ref="C2")
    _, labelled, _ = h.build()
    assert labelled.loc[0, "label"] == 1
    span = labelled.loc[0, "window_end"] - labelled.loc[0, "as_of"]
    assert span == pd.Timedelta(days=365 + 60)


def test_label_window_starts_at_the_decision_date_and_excludes_its_end_day():
    # A date-only record on the decision date is not an as-of feature, so it is a new offence;
    # one on the day the 365-day window ends (midnight) falls outside it.
    def label_for(offset_days: int) -> int:
        h = History()
        h.add("P", "incident", "2020-01-01", case_ref="C1")
        day = (pd.Timestamp("2020-01-04") + pd.Timedelta(days=offset_days)).strftime("%Y-%m-%d")
        h.add("P", "incident", day, case_ref="C2")
        return int(h.build()[1].loc[0, "label"])

    assert label_for(0) == 1 and label_for(364) == 1 and label_for(365) == 0


def test_missing_flags_are_not_recorded_and_a_non_boolean_flag_is_an_error():
    history = History()
    history.add("P1", "incident", "2024-01-01", weapon=None)
    history.add("P1", "charge", "2024-01-02", weapon=True, injury=float("nan"))
    events, mentions, crosswalk = history.frames()
    events = events.astype({"weapon": object, "injury": object})
    by_person = person_events(*map(Columns.from_frame, (events, mentions, crosswalk)))
    assert by_person["weapon"].tolist() == [False, True]
    assert by_person["injury"].dtype == bool and not by_person["injury"].any()
    events.loc[0, "weapon"] = "yes"
    with pytest.raises(IpviError, match="not true or false"):
        person_events(*map(Columns.from_frame, (events, mentions, crosswalk)))


def test_persons_table_takes_each_persons_most_common_dob_and_sex_ties_to_the_smallest():
    rows = [  # (record, person, dob, sex)
        ("r1", "A", "1990-01-02", "male"),
        ("r2", "A", "1990-01-02", "female"),
        ("r3", "A", "1990-01-01", "female"),
        ("r4", "A", None, "male"),
        ("r5", "B", "1985-05-05", "male"),
        ("r6", "B", "1980-01-01", "male"),  # one each: the earliest wins
        ("r7", "C", None, None),
        ("r8", "C", None, "unknown"),
        ("r9", None, "1970-01-01", "male"),  # not linked: no person
    ]
    mentions = pd.DataFrame(
        {
            "record_id": [r[0] for r in rows],
            "dob": pd.to_datetime([r[2] for r in rows]),
            "sex": [r[3] for r in rows],
        }
    )
    linked = [r for r in rows if r[1] is not None]
    crosswalk = pd.DataFrame(
        {"record_id": [r[0] for r in linked], "person_id": [r[1] for r in linked]}
    )
    persons = persons_table(Columns.from_frame(mentions), Columns.from_frame(crosswalk))
    assert list(persons["person_id"]) == ["A", "B", "C"]
    assert persons.lists()["dob"] == [
        pd.Timestamp("1990-01-02").to_pydatetime(),
        pd.Timestamp("1980-01-01").to_pydatetime(),
        None,
    ]
    # A: two "male", two "female": the tie goes to "female"; C: no known sex.
    assert list(persons["sex"]) == ["female", "male", None]


def test_distinct_victims_in_the_last_3_years_counts_recent_partners_and_cites_them():
    h = History()
    h.add("P", "incident", "2014-05-01", case_ref="C1", victim="V1")
    old = h.add("P", "incident", "2016-05-01", case_ref="C2", victim="V2")
    recent = h.add("P", "incident", "2019-09-01", case_ref="C3", victim="V1")
    h.add("P", "incident", "2020-06-01", case_ref="C4", victim="V3")
    _, labelled, features = h.build()
    last = int(np.argmax(labelled["index_date"]))  # the 2020 offence
    assert features.X["distinct_victims"][last] == 3
    assert features.X["distinct_victims_3y"][last] == 2  # V1 again in 2019, and V3 now
    records, _ = features.cite(np.array([last]), ["distinct_victims_3y"], np.array([0]), 1)
    assert recent in records[0] and old not in records[0]
    wording = FEATURE_BY_NAME["distinct_victims_3y"]
    assert wording.reason_text(2.0) == "2 distinct IPV victims in the last 3 years"
    assert wording.direction == 1 and "distinct_victims_3y" in model_features([])
