"""The distribution of each model input at training: the baseline live inputs are compared with.

:func:`feature_reference` summarises a run's rows per model input, and
:func:`training.store.write_run` keeps it in ``training_runs.feature_reference``; ``ipvi
monitor`` measures drift against it (PSI per feature, KS for continuous ones). Only
aggregates are kept (shares and quantiles over thousands of rows), never a row.

The rows are the run's test period (:func:`training.pipeline.train`): the most recent window
before deployment, on which the run's reported figures were measured, as the monitor's score
drift compares issued probabilities with the test period's. The fitting rows span every
earlier year, while a registry's inputs creep as it fills (prior counts grow with the years
of history it holds, careers age): against them, a live system that has not changed since
training would show drift from the first month.

A feature is *discrete* when the reference rows hold at most :data:`MAX_DISCRETE_VALUES`
distinct values (counts, yes/no flags): its bins are those values. Otherwise it is
*continuous* (age, days since ...): its bins are cut at the reference deciles, and its
percentiles are kept for the KS distance.
"""

from __future__ import annotations

import numpy as np

from ipvi.columns import Columns

MAX_DISCRETE_VALUES = 20
DECILES = np.linspace(0.1, 0.9, 9)
PERCENTILES = np.linspace(0.0, 1.0, 101)


def _bin_shares(values: np.ndarray, edges: np.ndarray) -> list[float]:
    """Shares of known values in the bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)``."""
    codes = np.searchsorted(edges, values, side="left")
    return (np.bincount(codes, minlength=len(edges) + 1) / max(len(values), 1)).tolist()


def describe(values: np.ndarray) -> dict:
    """The reference of one feature's values (NaN: unknown)."""
    values = np.asarray(values, dtype=float)
    known = values[~np.isnan(values)]
    entry = {"n": int(values.size), "missing": float(np.isnan(values).mean()) if values.size else 0}
    distinct = np.unique(known)
    if distinct.size <= MAX_DISCRETE_VALUES:
        shares = [float((known == v).mean()) for v in distinct] if known.size else []
        return {**entry, "kind": "discrete", "values": distinct.tolist(), "shares": shares}
    edges = np.unique(np.quantile(known, DECILES))
    return {
        **entry,
        "kind": "continuous",
        "edges": edges.tolist(),
        "shares": _bin_shares(known, edges),
        "percentiles": np.quantile(known, PERCENTILES).tolist(),
    }


def feature_reference(X: Columns, features: list[str], rows: np.ndarray) -> dict[str, dict]:
    """The reference of each model input (``features``, columns of ``X``) over ``rows`` (a
    boolean mask)."""
    return {name: describe(np.asarray(X[name], dtype=float)[rows]) for name in features}
