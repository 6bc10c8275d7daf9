"""Mixture search (SPEC §7): fit held-out loss against the mixtures of proxy runs, propose the best mixture
the sampler can realise, and write it as a ``schedule --weights`` file.

- :mod:`.fit` — the log-linear data-mixing law and a LightGBM regressor (RegMix), with leave-one-out
  Spearman and R²;
- :mod:`.propose` — the sampler's constraints (each cluster's clip for the budget, a KL limit to the
  natural mixture) and the mixture minimising the fitted loss under them;
- :mod:`.weights` — the weights file and its provenance sidecar (their one owner).

The proposed shares are token shares: ``schedule --weights FILE --balance tokens --budget-tokens T``
(``--alpha 0``, the default) splits ``T`` between the clusters in exactly these proportions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ClusterClipError
from .fit import MODELS, LogLinear, MixtureFit, fit_mixture
from .propose import Constraints, constraints_for, minimise_linear, search

__all__ = ["MODELS", "Constraints", "MixtureFit", "Proposal", "constraints_for", "fit_mixture", "fit_runs", "propose",
           "propose_weights"]


def fit_runs(runs_dir, out_dir, settings=None, *, overwrite: bool = False, progress: bool = True, log=None, **kwargs):
    """``clusterclip fit``: held-out loss of a ``proxy`` directory regressed on its mixtures (a ``StepResult``)."""
    from ..steps import run_step, settings_from
    from .fit_step import FitStep
    from .settings import FitSettings

    s = settings_from(settings, kwargs, FitSettings)
    return run_step(FitStep.open(runs_dir, s, progress=progress, log=log), out_dir, overwrite=overwrite)


def propose_weights(fit_dir, out, settings=None, *, overwrite: bool = False, **kwargs):
    """``clusterclip propose``: the best feasible mixture of ``fit_dir`` as a ``--weights`` file (+ sidecar)."""
    from .propose_file import propose_weights as _propose

    return _propose(fit_dir, out, settings, overwrite=overwrite, **kwargs)


@dataclass(frozen=True)
class Proposal:
    """The proposed token shares, the fit's prediction for them and for the natural mixture, and how they were
    found (``exact``: the log-linear optimum; ``search``: RegMix's random search)."""

    weights: np.ndarray
    predicted: float
    natural_predicted: float
    method: str

    def record(self) -> dict:
        return {"predicted_loss": self.predicted, "natural_predicted_loss": self.natural_predicted,
                "method": self.method}


def propose(fit: MixtureFit, constraints: Constraints, *, seed: int = 0, n: int = 4096) -> Proposal:
    """The feasible mixture with the lowest predicted loss (see :mod:`.propose`)."""
    if isinstance(fit.model, LogLinear):
        weights, method = minimise_linear(fit.model.t, constraints), "exact"
    else:
        weights, method = search(fit.predict, constraints, n=n, seed=seed), "search"
    broken = constraints.violations(weights, tol=1e-6)
    if broken:  # the solvers return feasible points by construction
        raise ClusterClipError(f"propose: the proposal breaks a constraint ({broken[0]}); this is a bug: please "
                               f"report it with the command")
    predicted, natural = fit.predict(np.vstack([weights, constraints.natural]))
    return Proposal(weights, float(predicted), float(natural), method)
