"""The fairness stage: group metrics with intervals, disparities, the report and the gate.

Built on fairlearn's ``MetricFrame`` (:class:`fairness.metrics.GroupMetrics`). It audits any
scored table: a model version's evaluation predictions (:mod:`fairness.model_version`) or a
scored file (:func:`fairness.inputs.scored_file_input`); :func:`fairness.audit.run_audit` does
the work, :mod:`fairness.report` writes the HTML, :mod:`fairness.gate` gives the verdict that
``ipvi promote`` (:mod:`fairness.promotion`) enforces. Imports only ``ipvi`` among the stages.
"""
