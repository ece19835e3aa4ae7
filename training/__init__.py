"""The training stage: offences, as-of features, rule tiers, the risk model, scoring.

Modules, in the order data flows through them: :mod:`~training.offences` (person events,
offences, index offences), :mod:`~training.labels` ("The label"), :mod:`~training.features`
(as-of features and the one table of feature definitions), :mod:`~training.tiers` (rule tiers
with provenance), :mod:`~training.lethality`, :mod:`~training.models` (monotone LightGBM and
calibration), :mod:`~training.scorecard`, :mod:`~training.baselines`, :mod:`~training.bands`,
:mod:`~training.reasons`, :mod:`~training.evaluate`, :mod:`~training.pipeline` (one training
run), :mod:`~training.bundle` and :mod:`~training.registry` (MLflow), :mod:`~training.scoring`
(the one scoring path, used by the service), :mod:`~training.tier_list`,
:mod:`~training.review_priority`, :mod:`~training.store` (tables, purge step),
:mod:`~training.run` (what the CLI commands do).
"""
