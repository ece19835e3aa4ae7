"""One typed configuration, loaded from YAML over packaged defaults and validated once.

Every stage reads its own section of :class:`Config`. The defaults in ``default_config.yaml``
work on the shipped sample; a user file given with ``--config`` (or ``IPVI_CONFIG``) overrides
any subset of keys. Unknown keys and bad values raise :class:`~ipvi.errors.ConfigError` naming
the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ipvi.errors import ConfigError
from ipvi.schema import EVENT_COLUMNS, MENTION_COLUMNS

DEFAULT_CONFIG_FILE = "default_config.yaml"


class StrictModel(BaseModel):
    """Base for every section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=False)


# --------------------------------------------------------------------------- paths, stores


class DatabaseConfig(StrictModel):
    url: str = "sqlite:///.ipvi/registry.sqlite"


class MlflowConfig(StrictModel):
    tracking_uri: str = "sqlite:///.ipvi/mlflow.db"
    artifact_location: str = ".ipvi/mlartifacts"
    model_name: str = "ipvi-risk"


class PathsConfig(StrictModel):
    home: str = ".ipvi"
    sample_dir: str = "data_samples"
    reports_dir: str = ".ipvi/reports"
    # The site secret when IPVI_AUDIT_KEY is not set (ipvi.site_key); keep it off the database.
    audit_key_file: str = ".ipvi/audit.key"
    # Where `ipvi audit-log checkpoint` writes and `ipvi audit-log verify` reads by default.
    audit_checkpoint_file: str = ".ipvi/audit-checkpoints.jsonl"


# --------------------------------------------------------------------------- ingest

# Fields an agency mapping may fill: the canonical mention and event columns, plus a full
# name column that ingest splits into first / middle / last / suffix.
MAPPABLE_FIELDS: frozenset[str] = (
    frozenset(MENTION_COLUMNS) | frozenset(EVENT_COLUMNS) | {"full_name"}
) - {"agency", "dob_raw"}


class AgencyMapping(StrictModel):
    """How one agency's extract maps onto canonical mentions and events.

    One extract row is one person mentioned in one agency event.
    """

    file: str = Field(description="file name of the extract inside the ingest folder")
    record_prefix: str = Field(description="agency prefix of record and event ids, e.g. PD")
    columns: dict[str, str] = Field(description="canonical field -> extract column")
    date_formats: list[str] = Field(description="strptime formats for event dates, in order")
    dob_formats: list[str] = Field(description="strptime formats for dates of birth, in order")
    full_name_format: Literal["last_comma_first", "first_last"] | None = None
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="canonical field -> {extract code: canonical value}"
    )
    constants: dict[str, str | bool] = Field(
        default_factory=dict, description="canonical field -> value for every row"
    )
    true_values: list[str] = Field(default_factory=lambda: ["Y", "YES", "1", "T", "TRUE"])
    false_values: list[str] = Field(default_factory=lambda: ["N", "NO", "0", "F", "FALSE", ""])

    @field_validator("columns", "values", "constants")
    @classmethod
    def _known_fields(cls, mapping: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(mapping) - MAPPABLE_FIELDS)
        if unknown:
            raise ValueError(f"unknown canonical field(s): {', '.join(unknown)}")
        return mapping


class IngestConfig(StrictModel):
    agencies: dict[str, AgencyMapping]
    dob_min_year: int = 1900
    min_age_years: int = 10
    max_age_years: int = 110
    lock_timeout_seconds: float = 30.0


# --------------------------------------------------------------------------- later stages
# Each stage owns its section below; keys are documented in default_config.yaml.


class LinkageComparison(StrictModel):
    """One comparison: a named preset over a column, or explicit levels (null and else implicit).

    Level dicts are ``{type: exact|jaro_winkler|one_char_off|nickname|token_overlap|name_swap|
    initial|day_month_swapped|same_year|within_days|postal_area|same_prefix, ...parameters}``;
    linkage.settings checks them.
    """

    column: str = Field(min_length=1)
    preset: (
        Literal[
            "name",
            "first_name",
            "last_name",
            "dob",
            "exact",
            "string",
            "initial",
            "digits",
            "agency_id",
            "postcode",
        ]
        | None
    ) = None
    thresholds: list[float] = Field(default_factory=lambda: [0.92, 0.8])
    tf: bool = False
    levels: list[dict[str, Any]] | None = None

    @field_validator("thresholds")
    @classmethod
    def _descending(cls, values: list[float]) -> list[float]:
        if any(not 0 < value <= 1 for value in values) or values != sorted(values, reverse=True):
            raise ValueError("thresholds must lie in (0, 1] and descend")
        return values


def _probability_or_auto(value: float | str) -> float | str:
    if value != "auto" and not 0 < value < 1:
        raise ValueError("must be 'auto' or lie in (0, 1)")
    return value


# A probability in (0, 1), or "auto": learned from the data in front of the linker.
ProbabilityOrAuto = Annotated[float | Literal["auto"], AfterValidator(_probability_or_auto)]


class LinkageClusterConfig(StrictModel):
    """Clustering that resists chaining (see linkage.cluster)."""

    min_average_probability: ProbabilityOrAuto = "auto"
    strong_identifiers: list[str] = Field(default_factory=lambda: ["ssn_last4", "dob"])
    exclusive_identifiers: list[str] = Field(default_factory=lambda: ["suffix"])
    max_conflict_m: float = Field(0.01, ge=0, lt=1)


class LinkageSupervisedConfig(StrictModel):
    """The supervised option: logistic regression trained on clerical decisions."""

    enabled: bool = False
    min_labels_per_class: int = Field(20, ge=1)
    C: float = Field(1.0, gt=0)


class LinkageAccuracyConfig(StrictModel):
    """The random sample of pairs behind the accuracy estimate from labels (linkage.accuracy)."""

    sample_size: int = Field(300, ge=0)
    min_labels_per_stratum: int = Field(5, ge=1)


class LinkageConfig(StrictModel):
    """Comparisons, blocking rules and thresholds of the linker (linkage.settings reads it)."""

    # Where the pair-heavy steps (and `ipvi score --all`) run: this process, or Apache Spark
    # (the `spark` section).
    engine: Literal["local", "spark"] = "local"
    comparisons: list[LinkageComparison] = Field(default_factory=list)
    blocking_rules: list[list[str]] | Literal["auto"] = "auto"
    pairs_per_record: float = Field(50.0, gt=0)
    max_block_size: int = Field(300, ge=2)
    # A rule's own limit, by the rule written as its fields joined with "+".
    block_size_limits: dict[str, int] = Field(default_factory=dict)
    expand_linked_components: bool = True
    link_threshold: ProbabilityOrAuto = "auto"
    review_lower: float = Field(0.2, gt=0, lt=1)
    review_upper: float = Field(0.8, gt=0, lt=1)
    review_per_decision: bool = True
    accuracy: LinkageAccuracyConfig = LinkageAccuracyConfig()
    random_pairs: int = Field(200_000, ge=1000)
    em_max_iterations: int = Field(100, ge=1)
    em_tolerance: float = Field(1e-5, gt=0)
    cluster: LinkageClusterConfig = LinkageClusterConfig()
    supervised: LinkageSupervisedConfig = LinkageSupervisedConfig()
    person_id_prefix: str = Field("P", min_length=1, max_length=8)

    @field_validator("blocking_rules")
    @classmethod
    def _rules(cls, rules):
        if rules != "auto" and (not rules or any(not rule for rule in rules)):
            raise ValueError("give 'auto' or a non-empty list of non-empty rules")
        return rules

    @field_validator("block_size_limits")
    @classmethod
    def _limits_name_rules(cls, limits: dict[str, int], info) -> dict[str, int]:
        listed = info.data.get("blocking_rules", [])
        rules = {"+".join(rule) for rule in listed} if listed != "auto" else set()
        for name, limit in limits.items():
            if name not in rules:
                raise ValueError(f"'{name}' is not a blocking rule (write its fields joined by +)")
            if limit < 2:
                raise ValueError(f"'{name}': a block size limit is at least 2")
        return limits

    def block_limits(self, rules: list[list[str]]) -> list[int]:
        """The block size limit of each of ``rules``: its own, else ``max_block_size``."""
        return [self.block_size_limits.get("+".join(rule), self.max_block_size) for rule in rules]

    lock_timeout_seconds: float = Field(0.0, ge=0)
    # A running linkage renews its lock's lease; a lock whose lease ran out is stale.
    lock_lease_seconds: float = Field(300.0, ge=10)
    seed: int = 0


class TierRule(StrictModel):
    """One rule tier rule: ``tier`` when every ``all`` and at least one ``any`` condition holds.

    A condition is ``[feature, op, value]`` over the shared feature definitions
    (:mod:`training.features`); features are checked when the rules are loaded by training.
    """

    tier: Literal["A", "B", "C", "D"]
    all: list[tuple[str, Literal[">=", ">", "<=", "<", "==", "!="], float]] = Field(
        default_factory=list
    )
    any: list[tuple[str, Literal[">=", ">", "<=", "<", "==", "!="], float]] = Field(
        default_factory=list
    )
    reason: str = Field(min_length=1)


class TierConfig(StrictModel):
    """Ordered tier rules (first match wins; the last must match everyone) and charge counting."""

    count_charges: Literal["all", "pending_or_convicted", "convicted"] = "pending_or_convicted"
    confirm_threshold: float = Field(0.9, gt=0, le=1)
    dual_arrest_days: int = Field(30, ge=0)
    rules: list[TierRule]

    @field_validator("rules")
    @classmethod
    def _catch_all_last(cls, rules: list[TierRule]) -> list[TierRule]:
        if not rules:
            raise ValueError("at least one tier rule is required")
        if rules[-1].all or rules[-1].any:
            raise ValueError("the last tier rule must have no conditions (it catches everyone)")
        return rules


class BandConfig(StrictModel):
    """One risk band: probabilities from ``lower`` (inclusive) up to the next band's ``lower``."""

    name: str
    lower: float = Field(ge=0, lt=1)
    use: Literal["outreach", "punitive", "none"] = "none"

    @field_validator("name")
    @classmethod
    def _not_risk(cls, name: str) -> str:
        if "risk" in name.lower() or "safe" in name.lower():
            raise ValueError("band names describe the likelihood of a recorded re-offence")
        return name


class LethalityFlag(StrictModel):
    """A rule-based lethality marker shown with every score: ``[feature, op, value]``."""

    name: str
    any: list[tuple[str, Literal[">=", ">", "<=", "<", "==", "!="], float]]
    wording: str


class SplitConfig(StrictModel):
    """Time split: test = index dates from ``test_start`` (or the ``test_fraction`` quantile)."""

    test_start: str | None = None
    test_fraction: float = Field(0.35, gt=0, lt=1)
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    calibration_fraction: float = Field(0.2, gt=0, lt=0.5)


class ModelParams(StrictModel):
    """LightGBM settings and calibration."""

    learning_rate: float = Field(0.1, gt=0, le=1)
    num_leaves: int = Field(7, ge=2)
    min_child_samples: int = Field(40, ge=1)
    max_rounds: int = Field(600, ge=1)
    early_stopping_rounds: int = Field(40, ge=1)
    reg_lambda: float = Field(5.0, ge=0)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    calibration: Literal["isotonic", "sigmoid"] = "sigmoid"
    monotone: bool = True
    refit: bool = True
    num_threads: int = Field(1, ge=1)
    seed: int = 20240501


class TrainingConfig(StrictModel):
    """Training: offences, labels, as-of features, rule tiers, models, bands, evaluation."""

    decision_lag_days: int = Field(3, ge=0)
    offence_window_days: int = Field(2, ge=0)
    followup_days: int = Field(365, ge=1)
    recording_days: int = Field(90, ge=0)
    extract_date: str | None = None
    protective_order_days: int = Field(365, ge=1)
    probation_days: int = Field(730, ge=1)
    excluded_features: list[str] = Field(default_factory=lambda: ["sex", "zip", "neighbourhood"])
    tiers: TierConfig
    bands: list[BandConfig]
    lethality: list[LethalityFlag]
    split: SplitConfig = SplitConfig()
    model: ModelParams = ModelParams()
    scorecard_items: int = Field(10, ge=1, le=12)
    reason_codes: int = Field(4, ge=3, le=5)
    n_bootstrap: int = Field(200, ge=10, le=5000)
    calibration_bins: int = Field(10, ge=2, le=50)
    registry_alias: str = "challenger"
    list_dir: str = ".ipvi/lists"

    @field_validator("bands")
    @classmethod
    def _bands_ordered(cls, bands: list[BandConfig]) -> list[BandConfig]:
        if not bands or bands[0].lower != 0:
            raise ValueError("the first band must start at 0")
        if any(b.lower <= a.lower for a, b in zip(bands, bands[1:], strict=False)):
            raise ValueError("band lower cut-points must be strictly increasing")
        return bands


class FairnessTolerance(StrictModel):
    """The ratio band inside which a group's rate counts as on a par with the reference's."""

    low: float = Field(0.8, gt=0, le=1)
    high: float = Field(1.25, ge=1)


class FairnessGate(StrictModel):
    """Which measures block promotion; the others are reported only."""

    fpr_at_punitive: bool = True
    fnr_at_outreach: bool = True
    calibration: bool = True
    calibration_tolerance: float = Field(0.05, gt=0, lt=1)


class FairnessPolicy(StrictModel):
    """The fairness policy: hashed into every audit, and what ``ipvi promote`` enforces."""

    attributes: list[str] = Field(default_factory=lambda: ["race", "ethnicity", "sex"])
    report_only_attributes: list[str] = Field(default_factory=lambda: ["age_band"])
    intersections: bool = True
    age_band_edges: list[int] = Field(default_factory=lambda: [25, 35, 45, 55])
    reference: dict[str, str] = Field(default_factory=dict)
    tolerance: FairnessTolerance = FairnessTolerance()
    min_difference: float = Field(0.05, ge=0, lt=1)
    decide_by: Literal["interval", "point"] = "interval"
    min_positives: int = Field(30, ge=0)
    min_negatives: int = Field(30, ge=0)
    required_groups: dict[str, list[str]] = Field(default_factory=dict)
    public_min_cell: int = Field(11, ge=1)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    n_bootstrap: int = Field(200, ge=20, le=10000)
    seed: int = 20240501
    gate: FairnessGate = FairnessGate()
    punitive_tiers: list[str] = Field(default_factory=lambda: ["A", "B"])
    gated_instruments: list[Literal["model", "scorecard", "tiers"]] = Field(
        default_factory=lambda: ["model"]
    )

    @field_validator("age_band_edges")
    @classmethod
    def _increasing(cls, edges: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise ValueError("age band edges must be strictly increasing")
        return edges


class DecisionAction(StrictModel):
    """One action staff may record; ``notifies_offender`` actions need advocate contact first."""

    notifies_offender: bool = False


KeyRole = Literal["scoring", "advocate", "admin", "reviewer", "monitoring"]


class ServingConfig(StrictModel):
    """The decision-support service: model, limits, keys, rate limits, faults, audit spool."""

    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64)
    request_timeout_seconds: float = Field(30.0, gt=0)
    keep_alive_seconds: int = Field(75, ge=1)
    max_requests_per_connection: int = Field(100, ge=0)
    model_alias: str = "champion"
    model_version: str | None = None
    max_batch: int = Field(1000, ge=1)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    key_cache_seconds: float = Field(10.0, gt=0, le=30)
    link_rate_per_second: float = Field(20.0, gt=0)
    link_burst: int = Field(40, ge=1)
    link_refresh_seconds: float = Field(30.0, gt=0, le=60)
    reaudit_refresh_seconds: float = Field(30.0, gt=0, le=600)
    db_timeout_seconds: float = Field(1.5, gt=0, le=2)
    retry_after_seconds: int = Field(2, ge=1)
    db_probe_seconds: float = Field(1.0, gt=0)
    readyz_requires_database: bool = True
    audit_spool_dir: str = ".ipvi/audit_spool"
    audit_flush_seconds: float = Field(0.5, gt=0, le=1)
    review_lease_seconds: float = Field(600.0, ge=10)
    review_session_hours: float = Field(8.0, gt=0, le=24)
    public_metrics: bool = False
    inline_person_id_pattern: str = r"^[A-Za-z0-9_-]{1,64}$"
    decision_clock_skew_seconds: float = Field(300.0, ge=0)
    link_victim_share: float = Field(0.5, gt=0, le=1)
    roles: dict[str, list[KeyRole]] = Field(
        default_factory=lambda: {
            "/review": ["reviewer"],
            "/v1/score": ["scoring", "admin"],
            "/v1/tier": ["scoring", "advocate", "admin"],
            "/v1/link": ["scoring", "advocate", "admin"],
            "/v1/decision": ["scoring", "advocate", "admin"],
            "/metrics": ["monitoring", "admin"],
        }
    )
    decision_actions: dict[str, DecisionAction] = Field(default_factory=dict)

    @field_validator("inline_person_id_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        return pattern


# --------------------------------------------------------------------------- monitoring


class Threshold(StrictModel):
    """A measure's warning and alarm levels: ``warn`` <= ``alarm``, both inside the measure's
    range (checked by the section, which knows the range)."""

    warn: float
    alarm: float


# Each monitored measure, the range its thresholds must lie in, and what it is.
MONITORING_MEASURES: dict[str, tuple[float, float, str]] = {
    "psi": (0.0, 10.0, "population stability index of a model input against training"),
    "ks": (0.0, 1.0, "Kolmogorov-Smirnov distance of a continuous input from training"),
    "score_psi": (0.0, 10.0, "PSI of the issued probabilities against the test period's"),
    "mix_shift": (
        0.0,
        1.0,
        "change of a tier's or band's share from training that matters (judged by the lower "
        "end of its 95 % interval)",
    ),
    "auc_drop": (0.0, 0.5, "AUC at training minus the AUC on matured outcomes"),
    "ece": (0.0, 1.0, "expected calibration error on matured outcomes"),
    "provisional_share": (0.0, 1.0, "share of issued scores whose tier is provisional"),
    "review_backlog_days": (0.0, 3650.0, "age in days of the oldest pending review pair"),
}


COUNT_KINDS = ("incidents", "injuries", "strangulation", "calls_for_service")


class CountAlarmConfig(StrictModel):
    """The recording-change alarm on monthly event counts sliced by zip (monitoring/counts.py).

    Each kind of count in ``kinds`` (of :data:`COUNT_KINDS`), in each window of
    ``window_months`` in the monitored period, is compared with the
    ``reference_months`` before it: a zip's share of the window's events against its share of
    the reference's; so is each span of up to ``max_span_windows`` windows ending with it,
    against the ``reference_months`` before the span. An alarm (warning) needs a family-wise
    p-value, over every window and kind tested in one run, at or under ``alpha_alarm``
    (``alpha_warn``).
    """

    # The kinds of count the alarm tests (all four are counted and shown). Incidents are what a
    # recording change moves; injuries and strangulation are subsets of them, and each kind
    # tested divides the false-alarm budget further.
    kinds: list[Literal["incidents", "injuries", "strangulation", "calls_for_service"]] = Field(
        default_factory=lambda: ["incidents"], min_length=1
    )
    # Offence codes that mark an incident record as a call for service (the extracts map the
    # police record type CFS to an incident; the code keeps it apart).
    call_codes: list[str] = Field(default_factory=lambda: ["CFS-DOMESTIC"])
    window_months: int = Field(3, ge=1, le=12)
    reference_months: int = Field(24, ge=6, le=120)
    # The longest span of consecutive windows, ending with the window judged, whose events are
    # scanned together: a persistent change too small for one window adds up over a span.
    max_span_windows: int = Field(8, ge=1, le=12)
    # Zips with fewer events over the reference are pooled into one "other" slice.
    min_zip_events: int = Field(20, ge=1)
    alpha_warn: float = 0.05
    alpha_alarm: float = 0.01
    n_simulations: int = Field(9999, ge=99, le=1_000_000)

    @model_validator(mode="after")
    def _levels(self) -> CountAlarmConfig:
        for name in ("alpha_warn", "alpha_alarm"):
            value = getattr(self, name)
            if not 0.0 < value < 0.5:
                raise ValueError(
                    f"{name} = {value:g} is out of range: a family-wise false-alarm "
                    "probability lies in (0, 0.5)"
                )
        if self.alpha_alarm > self.alpha_warn:
            raise ValueError(
                f"alpha_alarm ({self.alpha_alarm:g}) must not exceed alpha_warn "
                f"({self.alpha_warn:g}): an alarm needs stronger evidence than a warning"
            )
        return self


class ProgrammeConfig(StrictModel):
    """The programme's own results (monitoring/programme.py): re-offence curves after
    notification, and the matched comparison of notified with not (yet) notified people."""

    # Risk strata: tier x this many score bands (quantiles of the notified's scores).
    score_bands: int = Field(5, ge=1, le=20)
    # Fewer notified (or comparison) people with a matured outcome: no estimate, a reason.
    min_notified: int = Field(30, ge=1)
    min_controls: int = Field(30, ge=1)
    # Recording uplifts (notified / not notified: how much more often an offence of a notified
    # person is recorded) for the feedback-loop sensitivity analysis.
    recording_uplifts: list[Annotated[float, Field(ge=1.0, le=5.0)]] = Field(
        default_factory=lambda: [1.0, 1.1, 1.2, 1.3, 1.5, 2.0], min_length=1
    )


class MonitoringConfig(StrictModel):
    """What ``ipvi monitor`` compares and when a change is a warning or an alarm."""

    period: Literal["month", "quarter"] = "quarter"
    # Periods (and groups) with fewer matured outcomes are reported, not judged; the re-audit
    # needs this many in all.
    min_outcomes: int = Field(100, ge=1)
    # Drift of a period with fewer scores is shown, not judged: PSI over ten bins of a few dozen
    # scores is mostly sampling noise (about 0.3 at 30 scores, 0.05 at 200).
    min_scores: int = Field(200, ge=1)
    n_bootstrap: int = Field(200, ge=20, le=10000)
    calibration_bins: int = Field(10, ge=2, le=100)
    thresholds: dict[str, Threshold] = Field(
        default_factory=lambda: {
            "psi": Threshold(warn=0.1, alarm=0.25),
            "ks": Threshold(warn=0.1, alarm=0.2),
            "score_psi": Threshold(warn=0.1, alarm=0.25),
            "mix_shift": Threshold(warn=0.05, alarm=0.1),
            "auc_drop": Threshold(warn=0.03, alarm=0.06),
            "ece": Threshold(warn=0.05, alarm=0.1),
            "provisional_share": Threshold(warn=0.2, alarm=0.4),
            "review_backlog_days": Threshold(warn=14, alarm=30),
        }
    )
    counts: CountAlarmConfig = CountAlarmConfig()
    programme: ProgrammeConfig = ProgrammeConfig()

    @field_validator("thresholds")
    @classmethod
    def _in_range(cls, thresholds: dict[str, Threshold]) -> dict[str, Threshold]:
        missing = sorted(set(MONITORING_MEASURES) - set(thresholds))
        if missing:
            raise ValueError(f"missing threshold(s): {', '.join(missing)}")
        for name, threshold in thresholds.items():
            if name not in MONITORING_MEASURES:
                known = ", ".join(MONITORING_MEASURES)
                raise ValueError(f"unknown measure {name!r} (one of {known})")
            low, high, meaning = MONITORING_MEASURES[name]
            for level in ("warn", "alarm"):
                value = getattr(threshold, level)
                if not low <= value <= high:
                    raise ValueError(
                        f"{name}.{level} = {value:g} is out of range: the {meaning} lies in "
                        f"[{low:g}, {high:g}]"
                    )
            if threshold.warn > threshold.alarm:
                raise ValueError(
                    f"{name}: warn ({threshold.warn:g}) must not exceed alarm ({threshold.alarm:g})"
                )
        return thresholds


# --------------------------------------------------------------------------- root


class SparkConfig(StrictModel):
    """The Spark session of ``--engine spark``: ``master`` (``local[*]``, ``spark://host:port``,
    ...), ``conf`` passed to the session as given, ``app_name``. ``SPARK_REMOTE`` (a Spark
    Connect URL, ``sc://host:port``) wins over ``master``."""

    master: str = Field("local[*]", min_length=1)
    app_name: str = Field("ipvi", min_length=1)
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # A folder the driver and every executor can read and write (shared storage on a real
    # cluster) for the engine's Parquet files; none: a temporary folder on this machine.
    work_dir: str | None = None

    @field_validator("master")
    @classmethod
    def _known_master(cls, master: str) -> str:
        if not re.match(r"^(local(\[(\*|\d+)(,\s*\d+)?\])?|spark://\S+|yarn|k8s://\S+)$", master):
            raise ValueError("give local, local[N], local[*], spark://HOST:PORT, yarn or k8s://URL")
        return master

    @property
    def remote(self) -> str | None:
        """The Spark Connect URL from ``SPARK_REMOTE``, if set."""
        return os.environ.get("SPARK_REMOTE") or None


class Config(StrictModel):
    database: DatabaseConfig = DatabaseConfig()
    mlflow: MlflowConfig = MlflowConfig()
    paths: PathsConfig = PathsConfig()
    ingest: IngestConfig
    linkage: LinkageConfig = LinkageConfig()
    training: TrainingConfig
    fairness_policy: FairnessPolicy = FairnessPolicy()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    spark: SparkConfig = SparkConfig()

    @property
    def database_url(self) -> str:
        """The registry URL: ``IPVI_DATABASE_URL`` wins over the file."""
        return os.environ.get("IPVI_DATABASE_URL") or self.database.url

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI: ``MLFLOW_TRACKING_URI`` wins over the file."""
        return os.environ.get("MLFLOW_TRACKING_URI") or self.mlflow.tracking_uri

    def section_hash(self, section: str) -> str:
        """A stable SHA-256 of one section, e.g. the fairness policy stamped on every audit."""
        payload = json.dumps(getattr(self, section).model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def default_config_dict() -> dict[str, Any]:
    """The packaged defaults as plain data."""
    text = resources.files("ipvi").joinpath(DEFAULT_CONFIG_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(root)"
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"config key '{key}': {message}{suffix}"


def config_from_dict(data: dict[str, Any]) -> Config:
    """Validate a full configuration dictionary."""
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None


def read_yaml_mapping(path: str | Path, *, what: str, error=ConfigError) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; ``what`` names the file in errors."""
    file = Path(path)
    if not file.is_file():
        raise error(f"{what} file not found: {file}")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as problem:
        raise error(f"{what} file {file} is not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise error(f"{what} file {file} must hold a mapping of keys")
    return data


def load_config(path: str | Path | None = None) -> Config:
    """Load the packaged defaults, overridden by ``path`` (or ``IPVI_CONFIG``) when given."""
    data = default_config_dict()
    path = path or os.environ.get("IPVI_CONFIG")
    if path:
        data = _deep_merge(data, read_yaml_mapping(path, what="config"))
    return config_from_dict(data)
