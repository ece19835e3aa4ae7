"""The one settings object the linker reads: comparisons, blocking rules and thresholds.

Built from the ``linkage`` section of the configuration (or a plain dict, or a YAML file) and
validated once; presets expand to ordered levels so YAML and Python say the same thing:
``{column: last_name, preset: last_name, thresholds: [0.92, 0.8], tf: true}``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ipvi.config import LinkageComparison, LinkageConfig
from ipvi.errors import ConfigError, IpviError
from linkage.compare import (
    Comparison,
    DayMonthSwapped,
    Exact,
    Initial,
    JaroWinklerAtLeast,
    Level,
    NameSwap,
    Nickname,
    OneCharOff,
    PostalArea,
    SamePrefix,
    TokenOverlap,
    WithinDays,
    make_level,
)
from linkage.fellegi_sunter import MOVING_TOGETHER

# The canonical field each derived blocking key is computed from (see standardize_frame).
KEY_SOURCES: dict[str, tuple[str, ...]] = {
    "fn_phon": ("first_name",),
    "ln_phon": ("last_name",),
    "ln_nysiis": ("last_name",),
    "fn_init": ("first_name",),
    "ln_init": ("last_name",),
    "name_key": ("first_name", "last_name"),
    "fn_nick": ("first_name",),
    "dob_year": ("dob",),
    "dob_md": ("dob",),
    "zip_area": ("zip",),
}


# Fields whose errors go together: a move changes street, city and postcode at once; a swap
# of first and last names changes both (see LinkageSettings.rule_sources).
FIELD_FAMILIES: tuple[tuple[str, ...], ...] = (*MOVING_TOGETHER, ("first_name", "last_name"))


def _preset_levels(spec: LinkageComparison) -> list[Level]:
    t = spec.thresholds
    if spec.preset == "first_name":
        levels: list[Level] = [Exact(tf=spec.tf), Nickname(), JaroWinklerAtLeast(t[0]), NameSwap()]
        return levels + [TokenOverlap()] + [JaroWinklerAtLeast(x) for x in t[1:]] + [Initial()]
    if spec.preset == "last_name":
        levels = [Exact(tf=spec.tf), JaroWinklerAtLeast(t[0]), TokenOverlap()]
        return levels + [JaroWinklerAtLeast(x) for x in t[1:]]
    if spec.preset == "name":
        return [Exact(tf=spec.tf)] + [JaroWinklerAtLeast(x) for x in t]
    if spec.preset == "dob":
        return [Exact(), OneCharOff(), DayMonthSwapped(), WithinDays(366)]
    if spec.preset == "postcode":
        return [Exact(tf=spec.tf), OneCharOff(), PostalArea()]
    if spec.preset == "exact":
        return [Exact(tf=spec.tf)]
    if spec.preset == "string":
        return [Exact(tf=spec.tf)] + [JaroWinklerAtLeast(x) for x in t]
    if spec.preset == "initial":
        return [Exact(), Initial()]
    if spec.preset == "agency_id":
        # Values are "agency id" (standardised "agency:id"): ids of one agency that differ
        # speak against a match; ids of two agencies say nothing.
        return [Exact(), SamePrefix(" ")]
    if spec.preset == "digits":
        return [Exact(), OneCharOff()]
    raise ConfigError(f"config key 'linkage.comparisons': unknown preset {spec.preset!r}")


def build_comparison(spec: LinkageComparison | dict[str, Any]) -> Comparison:
    """A :class:`Comparison` from its config form (a preset or explicit level dicts)."""
    if isinstance(spec, dict):
        spec = LinkageComparison.model_validate(spec)
    if spec.levels is not None:
        try:
            levels = [make_level(level) for level in spec.levels]
        except IpviError as error:
            raise ConfigError(f"config key 'linkage.comparisons.{spec.column}': {error}") from None
    elif spec.preset is not None:
        levels = _preset_levels(spec)
    else:
        raise ConfigError(
            f"config key 'linkage.comparisons.{spec.column}': give a preset or levels"
        )
    return Comparison(spec.column, levels)


@dataclass
class LinkageSettings:
    """Validated linkage settings: the comparisons, blocking rules and thresholds.

    Attributes
    ----------
    config : LinkageConfig
        The validated configuration section.
    comparisons : list of Comparison
        Built once from ``config.comparisons``.
    """

    config: LinkageConfig
    comparisons: list[Comparison]

    @classmethod
    def from_config(cls, config: LinkageConfig) -> LinkageSettings:
        if not config.comparisons:
            raise ConfigError("config key 'linkage.comparisons': at least one comparison needed")
        threshold = config.link_threshold
        if threshold != "auto" and not config.review_lower <= threshold <= config.review_upper:
            raise ConfigError(
                "config key 'linkage.link_threshold': must lie between review_lower and "
                "review_upper"
            )
        columns = [spec.column for spec in config.comparisons]
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise ConfigError(f"config key 'linkage.comparisons': {duplicated} compared twice")
        return cls(config=config, comparisons=[build_comparison(s) for s in config.comparisons])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkageSettings:
        """Settings from a plain ``linkage`` dict (unknown keys are errors naming the key)."""
        try:
            config = LinkageConfig.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"config key 'linkage.{key}': {first['msg']}") from None
        return cls.from_config(config)

    @classmethod
    def from_path(cls, path: str | Path) -> LinkageSettings:
        """Settings from a YAML file holding a ``linkage`` section (or the section itself)."""
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"linkage settings file not found: {file}")
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        return cls.from_dict(data.get("linkage", data))

    def for_fields(self, fields: list[str], generic: list[str] = ()) -> LinkageSettings:
        """The settings restricted to ``fields`` (canonical) plus ``generic`` string columns.

        Used by ``ipvi dedupe``: a mapped canonical field keeps its configured comparison, a
        generic column is compared as a string (with term frequencies). Listed blocking rules
        keep those whose fields are mapped, and each generic column blocks alone; ``auto``
        chooses among every mapped field's keys.
        """
        present = set(fields) | set(generic)
        specs = [spec for spec in self.config.comparisons if spec.column in present]
        specs += [
            LinkageComparison(column=column, preset="string", thresholds=[0.9], tf=True)
            for column in generic
        ]
        rules = self.config.blocking_rules
        if rules != "auto":
            rules = [
                rule
                for rule in rules
                if all(set(KEY_SOURCES.get(key, (key,))) <= present for key in rule)
            ]
            rules += [[column] for column in generic]
            if not rules:
                raise ConfigError(
                    "config key 'linkage.blocking_rules': no rule uses only the mapped "
                    f"fields ({', '.join(sorted(present))}); list one, or use auto"
                )
        config = self.config.model_copy(
            update={"comparisons": specs, "blocking_rules": rules}, deep=True
        )
        return LinkageSettings.from_config(config)

    @property
    def model_hash(self) -> str:
        """SHA-256 of the comparison specs: a stored model fits these settings iff it matches.

        Thresholds and blocking rules may change without refitting (the index reads them from
        the current settings); a change of comparisons or levels needs a new run.
        """
        specs = [spec.model_dump(mode="json") for spec in self.config.comparisons]
        text = json.dumps(specs, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def rule_sources(self, rule: list[str]) -> set[str]:
        """The fields a blocking rule reads, and those whose errors go with them (so EM does
        not learn m for any of them from its pairs): among pairs sharing a street, matches
        that moved are missing, so the postcode's disagreement would be understated; among
        pairs sharing a surname, so would a first name written as the surname (a swap)."""
        sources = {source for key in rule for source in KEY_SOURCES.get(key, (key,))}
        for family in FIELD_FAMILIES:
            if sources & set(family):
                sources |= set(family)
        return sources

    @property
    def columns(self) -> list[str]:
        """Every standardised column the comparisons read."""
        seen: list[str] = []
        for comparison in self.comparisons:
            seen += [c for c in comparison.columns if c not in seen]
        return seen
