"""The risk model: gradient-boosted trees with monotone constraints, then calibration.

LightGBM learns on the training period and stops early on a later validation period; with
``refit`` it then learns again on both periods for the rounds early stopping chose (small data
cannot spare the validation rows, and the later rows look most like the future). A
calibrator (isotonic or Platt) maps its raw score to a probability on a held-out calibration
period after that. Monotone constraints come from the feature definitions: where more of a
feature is known to mean more (or less) likelihood of a recorded re-offence, the model may not
say otherwise, which keeps it explainable and its reason codes coherent.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from ipvi.columns import Columns
from ipvi.config import ModelParams
from ipvi.errors import IpviError
from training.compiled_trees import checked_trees
from training.features import FEATURE_BY_NAME, check_no_protected

NOT_FITTED = "this {name} is not fitted yet: call fit first"
ONE_CLASS = "the label of the {period} period has one class only ({value}); cannot train"
CONSTANT = (
    "feature '{feature}' is constant in the training period; exclude it with "
    "'training.excluded_features' or check the data"
)


def check_fitted(estimator, attribute: str) -> None:
    """Raise a clear error when ``estimator`` lacks the learned ``attribute``."""
    if not hasattr(estimator, attribute):
        raise IpviError(NOT_FITTED.format(name=type(estimator).__name__))


def check_labels(y: np.ndarray, period: str) -> None:
    """Refuse a label with one class (no model can learn from it)."""
    values = np.unique(y)
    if len(values) < 2:
        raise IpviError(ONE_CLASS.format(period=period, value=values[0] if len(values) else "none"))


# The defaults of ``training.model`` in the configuration: ``RiskModel()`` and ``ipvi train``
# start from the same values.
_DEFAULTS = ModelParams()


class RiskModel:
    """Monotone LightGBM plus a calibrator fitted on a later period.

    Parameters
    ----------
    Every parameter defaults to its value under ``training.model`` in the configuration
    (:class:`ipvi.config.ModelParams`).

    learning_rate, num_leaves, min_child_samples, max_rounds, early_stopping_rounds,
    reg_lambda, feature_fraction : LightGBM settings.
    calibration : {"isotonic", "sigmoid"}
        Isotonic regression or Platt scaling on the raw score.
    monotone : bool
        Use the monotone directions of the feature definitions.
    refit : bool
        After early stopping, retrain on training plus validation rows for the chosen rounds.
    num_threads, seed : int

    Attributes
    ----------
    booster_ : lightgbm.Booster
    calibrator_ : fitted IsotonicRegression or LogisticRegression
    feature_names_in_ : list of str
    best_iteration_ : int
    compiled_trees_ : CompiledTrees or None
        The trees as contribution tables (:mod:`training.compiled_trees`), built at fit and
        at every load and checked against LightGBM; None when they are too large to compile
        or disagree (LightGBM then computes the contributions).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame({"prior_ipv_offences": rng.poisson(1, 600).astype(float),
    ...                   "age": rng.uniform(18, 60, 600)})
    >>> y = (rng.random(600) < 0.1 + 0.1 * X["prior_ipv_offences"]).astype(int)
    >>> model = RiskModel(max_rounds=20, min_child_samples=20).fit(
    ...     X[:300], y[:300], eval_set=(X[300:450], y[300:450]),
    ...     calibration_set=(X[450:], y[450:]))
    >>> bool(((model.predict_proba(X) >= 0) & (model.predict_proba(X) <= 1)).all())
    True
    """

    _constraints = {"calibration": {"isotonic", "sigmoid"}}

    def __init__(
        self,
        *,
        learning_rate: float = _DEFAULTS.learning_rate,
        num_leaves: int = _DEFAULTS.num_leaves,
        min_child_samples: int = _DEFAULTS.min_child_samples,
        max_rounds: int = _DEFAULTS.max_rounds,
        early_stopping_rounds: int = _DEFAULTS.early_stopping_rounds,
        reg_lambda: float = _DEFAULTS.reg_lambda,
        feature_fraction: float = _DEFAULTS.feature_fraction,
        calibration: str = _DEFAULTS.calibration,
        monotone: bool = _DEFAULTS.monotone,
        refit: bool = _DEFAULTS.refit,
        num_threads: int = _DEFAULTS.num_threads,
        seed: int = _DEFAULTS.seed,
    ) -> None:
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.reg_lambda = reg_lambda
        self.feature_fraction = feature_fraction
        self.calibration = calibration
        self.monotone = monotone
        self.refit = refit
        self.num_threads = num_threads
        self.seed = seed

    def get_params(self) -> dict:
        """The constructor arguments (logged to MLflow)."""
        return {
            name: getattr(self, name)
            for name in (
                "learning_rate",
                "num_leaves",
                "min_child_samples",
                "max_rounds",
                "early_stopping_rounds",
                "reg_lambda",
                "feature_fraction",
                "calibration",
                "monotone",
                "refit",
                "num_threads",
                "seed",
            )
        }

    def _lgb_params(self, columns: list[str]) -> dict:
        directions = [FEATURE_BY_NAME[c].direction if c in FEATURE_BY_NAME else 0 for c in columns]
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "lambda_l2": self.reg_lambda,
            "feature_fraction": self.feature_fraction,
            "feature_fraction_seed": self.seed,
            "bagging_seed": self.seed,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
            "monotone_constraints": directions if self.monotone else [0] * len(columns),
            "monotone_constraints_method": "intermediate",
        }

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        eval_set: tuple[pd.DataFrame, np.ndarray],
        calibration_set: tuple[pd.DataFrame, np.ndarray],
    ) -> RiskModel:
        """Learn the trees on ``X``, stop on ``eval_set``, calibrate on ``calibration_set``."""
        if self.calibration not in self._constraints["calibration"]:
            raise IpviError(
                f"config key 'training.model.calibration': '{self.calibration}' is not one of "
                "isotonic, sigmoid"
            )
        columns = list(X.columns)
        check_no_protected(columns)
        for name, (frame, labels) in {
            "training": (X, y),
            "validation": eval_set,
            "calibration": calibration_set,
        }.items():
            if len(frame) == 0:
                raise IpviError(f"the {name} period holds no index offences; adjust training.split")
            check_labels(np.asarray(labels), name)
        constant = [c for c in columns if X[c].nunique(dropna=False) < 2]
        if constant:
            raise IpviError(CONSTANT.format(feature=constant[0]))
        params = self._lgb_params(columns)
        train = lgb.Dataset(X, label=np.asarray(y), free_raw_data=False)
        valid = lgb.Dataset(eval_set[0][columns], label=np.asarray(eval_set[1]), reference=train)
        self.booster_ = lgb.train(
            params,
            train,
            num_boost_round=self.max_rounds,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        self.best_iteration_ = int(self.booster_.best_iteration or self.max_rounds)
        if self.refit:
            both = lgb.Dataset(
                pd.concat([X, eval_set[0][columns]]),
                label=np.concatenate([np.asarray(y), np.asarray(eval_set[1])]),
            )
            self.booster_ = lgb.train(params, both, num_boost_round=self.best_iteration_)
        self.feature_names_in_ = columns
        self.compiled_trees_ = checked_trees(self.booster_, self.best_iteration_)
        raw = self.raw_score(calibration_set[0])
        labels = np.asarray(calibration_set[1])
        if self.calibration == "isotonic":
            self.calibrator_ = IsotonicRegression(
                y_min=1e-4, y_max=1 - 1e-4, out_of_bounds="clip"
            ).fit(raw, labels)
        else:
            self.calibrator_ = LogisticRegression(C=1e6).fit(raw.reshape(-1, 1), labels)
        return self

    def feature_matrix(self, X: Columns | pd.DataFrame | np.ndarray) -> np.ndarray:
        """The model's inputs as a float64 array in training order (``feature_names_in_``).

        ``X`` is a table of named feature columns (the scoring core's :class:`Columns`, or a
        DataFrame in training), or this array already, taken as it is: every method taking
        ``X`` accepts it, so a caller asking for several answers converts the table once.
        """
        if isinstance(X, np.ndarray):
            # Columns are read by position: a matrix of another width would be misread.
            if X.ndim != 2 or X.shape[1] != len(self.feature_names_in_):
                raise IpviError(
                    f"a feature matrix needs {len(self.feature_names_in_)} columns in training "
                    f"order; got shape {X.shape}"
                )
            return X
        return np.column_stack(
            [np.asarray(X[name], dtype=float) for name in self.feature_names_in_]
        )

    def raw_score(self, X: Columns | pd.DataFrame | np.ndarray) -> np.ndarray:
        """LightGBM's raw (log-odds) score, before calibration."""
        check_fitted(self, "booster_")
        # Threads as configured (training.model.num_threads), not OpenMP's every core.
        return self.booster_.predict(
            self.feature_matrix(X),
            num_iteration=self.best_iteration_,
            raw_score=True,
            num_threads=self.num_threads,
        )

    def predict_proba(self, X: Columns | pd.DataFrame | np.ndarray) -> np.ndarray:
        """The calibrated probability of a recorded IPV re-offence (one column)."""
        check_fitted(self, "calibrator_")
        raw = self.raw_score(X)
        if self.calibration == "isotonic":
            return self.calibrator_.predict(raw)
        # Platt scaling: the sigmoid of the fitted line (LogisticRegression.predict_proba's
        # positive class, without its input validation, which costs more than the line).
        platt = self.calibrator_
        return expit(raw * platt.coef_[0, 0] + platt.intercept_[0])

    def contribution_matrix(self, X: Columns | pd.DataFrame | np.ndarray) -> np.ndarray:
        """Per-feature contributions to the raw score (``pred_contrib``), one column per
        feature of ``feature_names_in_``; the array behind :meth:`contributions`.

        From the compiled trees (:mod:`training.compiled_trees`), else from LightGBM, whose
        contributions walk every path of every tree for every row (many times slower).
        """
        check_fitted(self, "booster_")
        if self.compiled_trees_ is not None:
            return self.compiled_trees_.contributions(self.feature_matrix(X))
        values = self.booster_.predict(
            self.feature_matrix(X),
            num_iteration=self.best_iteration_,
            pred_contrib=True,
            num_threads=self.num_threads,
        )
        return values[:, :-1]

    def __getstate__(self) -> dict:
        """Pickled without the compiled trees: they are built again (and checked) on load."""
        return {key: value for key, value in self.__dict__.items() if key != "compiled_trees_"}

    def __setstate__(self, state: dict) -> None:
        """Unpickle, compiling and checking the trees (:func:`checked_trees`)."""
        self.__dict__.update(state)
        if "booster_" in state:
            self.compiled_trees_ = checked_trees(self.booster_, self.best_iteration_)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-feature contributions to the raw score (``pred_contrib``), one column each."""
        return pd.DataFrame(
            self.contribution_matrix(X), columns=self.feature_names_in_, index=X.index
        )
