"""Regress held-out loss on the mixture of proxy runs, and say honestly how well it predicts.

A mixture ``x`` is the share of each cluster in the tokens a proxy trained on (each row sums to 1);
the target ``y`` is one loss per run (by default the cluster-balanced held-out loss). Two models:

- ``loglinear`` — the data-mixing law of Ye et al. 2024 for one target, ``y = c + exp(t · x)``
  (``K + 1`` parameters: the scale ``k`` of their ``c + k·exp(t·x)`` is ``exp`` of a constant shift
  of ``t``, which the simplex absorbs). Fitted by non-linear least squares (scipy), ``c`` kept
  below the smallest loss, from a few starting points.
- ``lightgbm`` — gradient-boosted trees on the mixture, as RegMix (Liu et al. 2024), with settings
  for tens of runs instead of RegMix's hundreds (small leaves, no bagging, deterministic).

:func:`leave_one_out` refits without each run and predicts it; :func:`fit_mixture` reports the
Spearman correlation and R² of those predictions for each model and keeps the better one
(Spearman first: ranking mixtures is what the proposal needs; R² breaks ties).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

MODELS = ("loglinear", "lightgbm")
#: the fewest runs any fit is made from (LightGBM needs two leaves of two runs plus the one left out)
MIN_RUNS = 5


class LogLinear:
    """``y = c + exp(x · t)``, ``c < min(y)``."""

    name = "loglinear"

    def __init__(self) -> None:
        self.c = 0.0
        self.t = np.zeros(0)

    @staticmethod
    def n_parameters(n_clusters: int) -> int:
        return n_clusters + 1

    def fit(self, x: np.ndarray, y: np.ndarray) -> "LogLinear":
        from scipy.optimize import least_squares

        x, y = np.asarray(x, float), np.asarray(y, float)
        floor = float(y.min())
        spread = max(float(y.max() - y.min()), 1e-6)
        best = None
        for gap in (0.25, 1.0, 4.0):  # starting points: c a little, well and far below the smallest loss
            c0 = floor - gap * spread
            t0 = np.linalg.lstsq(x, np.log(y - c0), rcond=None)[0]

            def residuals(theta):
                return floor - np.exp(theta[0]) + np.exp(np.clip(x @ theta[1:], -50, 50)) - y

            res = least_squares(residuals, np.concatenate([[math.log(floor - c0)], t0]), method="trf",
                                max_nfev=2000, x_scale="jac")
            if best is None or res.cost < best.cost:
                best = res
        assert best is not None  # three starting points were tried
        self.c = floor - float(np.exp(best.x[0]))
        self.t = np.asarray(best.x[1:], float)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.c + np.exp(np.clip(np.asarray(x, float) @ self.t, -50, 50))

    def record(self) -> dict:
        return {"c": self.c, "t": [float(v) for v in self.t]}


class LightGBM:
    """Gradient-boosted trees (``lightgbm.train``), deterministic, one thread."""

    name = "lightgbm"
    ROUNDS = 300

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.booster: Any = None  # a lightgbm.Booster once fitted (or read back from model.txt)

    @staticmethod
    def n_parameters(n_clusters: int) -> int:
        return MIN_RUNS - 1

    def params(self, n_runs: int) -> dict:
        return {"objective": "regression", "learning_rate": 0.05, "num_leaves": 7,
                "min_data_in_leaf": max(2, n_runs // 10), "min_data_in_bin": 1, "min_sum_hessian_in_leaf": 0.0,
                "feature_pre_filter": False, "deterministic": True, "force_col_wise": True, "num_threads": 1,
                "seed": self.seed, "verbose": -1}

    def fit(self, x: np.ndarray, y: np.ndarray) -> "LightGBM":
        import lightgbm

        data = lightgbm.Dataset(np.asarray(x, float), np.asarray(y, float), params={"verbose": -1})
        self.booster = lightgbm.train(self.params(len(y)), data, num_boost_round=self.ROUNDS)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(np.asarray(x, float)), float)

    def record(self) -> dict:
        return {"rounds": self.ROUNDS, "params": self.params(0) | {"min_data_in_leaf": "max(2, runs // 10)"}}


def make_model(name: str, seed: int = 0) -> LogLinear | LightGBM:
    return LogLinear() if name == "loglinear" else LightGBM(seed)


# --------------------------------------------------------------------------- how well it predicts
def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties share their mean rank); NaN when either side is constant."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def r_squared(y: np.ndarray, predicted: np.ndarray) -> float:
    """``1 - SS_res / SS_tot`` (negative when the predictions are worse than the mean)."""
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - predicted) ** 2).sum()) / total if total > 0 else float("nan")


def leave_one_out(name: str, x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each run's loss predicted by the model fitted on all the other runs."""
    out = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        out[i] = make_model(name, seed).fit(x[keep], y[keep]).predict(x[i: i + 1])[0]
    return out


@dataclass
class MixtureFit:
    """The chosen ``model`` fitted on every run, and each candidate's leave-one-out figures."""

    model: LogLinear | LightGBM
    name: str
    loo: dict[str, dict] = field(default_factory=dict)
    x: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    y: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)

    def record(self) -> dict:
        """JSON-ready: the model, its parameters, each candidate's leave-one-out figures (None for NaN)."""
        def clean(v):
            return None if isinstance(v, float) and v != v else v

        return {"model": self.name, "parameters": self.model.record(),
                "leave_one_out": {k: {m: clean(v) for m, v in d.items() if m != "predicted"}
                                  for k, d in self.loo.items()}}


def check_fit_size(name: str, n_runs: int, n_clusters: int, source: str, what: str = "runs") -> None:
    """One line when ``n_runs`` points (``what``: runs, schedules) cannot support the model (leave-one-out needs
    more points than parameters)."""
    if n_runs < MIN_RUNS:
        raise InputError(f"{source}: {n_runs} {what}; a mixture fit needs at least {MIN_RUNS} mixtures; train "
                         f"proxies on more (e.g. `clusterclip mixtures --n {2 * MIN_RUNS}`)")
    need = make_model(name).n_parameters(n_clusters) + 1
    if n_runs < need:
        raise InputError(f"{source}: {n_runs} {what}, but the {name} fit over {n_clusters} clusters has {need - 1} "
                         f"parameters (leave-one-out needs {need}); train proxies on at least {need} mixtures or fit "
                         f"--model lightgbm")


def fit_mixture(x, y, *, model: str = "auto", seed: int = 0, source: str = "RUNS", what: str = "runs") -> MixtureFit:
    """Fit ``model`` (``auto``: every model the runs support, the better leave-one-out fit kept) on mixtures
    ``x`` ``[R, K]`` and losses ``y`` ``[R]``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.ndim != 2 or len(x) != len(y):
        raise InputError(f"{source}: {len(y)} losses for {len(x)} mixtures; every run needs both")
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(x)):
        raise InputError(f"{source}: a run has no finite loss or mixture; rerun it (`clusterclip proxy`)")
    names = list(MODELS) if model == "auto" else [model]
    if model == "auto":
        supported = [n for n in names if len(y) >= make_model(n).n_parameters(x.shape[1]) + 1]
        names = supported or names
    for n in names:
        check_fit_size(n, len(y), x.shape[1], source, what)
    loo: dict[str, dict[str, Any]] = {}
    for n in names:
        predicted = leave_one_out(n, x, y, seed)
        loo[n] = {"spearman": spearman(predicted, y), "r2": r_squared(y, predicted), "runs": len(y),
                  "predicted": predicted}
    chosen = max(names, key=lambda n: (_or_worst(loo[n]["spearman"]), _or_worst(loo[n]["r2"])))
    return MixtureFit(make_model(chosen, seed).fit(x, y), chosen, loo, x, y)


def _or_worst(v: float) -> float:
    return -math.inf if v != v else v
