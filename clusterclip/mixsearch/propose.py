"""Propose the mixture that minimises a fitted loss under the constraints the sampler enforces.

A mixture ``w`` (each cluster's share of the tokens, summing to 1) is **feasible** when

- every share is at most the cluster's cap: ``w_k <= tokens_k × clip_k / budget`` — what its
  documents, each used at most ``clip_k`` (``max_repeats``) times, can supply of a budget of
  ``budget`` tokens (:func:`clip_caps`); a cluster without tokens gets 0;
- with ``max_kl``, ``KL(w ‖ natural) <= max_kl``, ``natural`` being the corpus's own token shares
  (``w`` stays near the data as it is; clusters the corpus lacks stay at 0).

Both constraints are convex. With one ``max_repeats`` for every cluster ``natural`` satisfies them
whenever the budget is reachable; with per-cluster clips the mixture closest to ``natural`` within
the caps (:func:`closest_feasible`) may be farther than ``max_kl``, which is refused in one line. For the log-linear law ``c + exp(t · w)`` the best ``w`` minimises
the linear ``t · w``: :func:`minimise_linear` solves that exactly (the optimum is ``natural``
tilted by ``exp(-t/λ)`` with the capped clusters held at their caps, ``λ`` set so the KL limit
binds; without a limit, the cheapest clusters are filled to their caps). For LightGBM (piecewise
constant) :func:`search` does what RegMix does: many random feasible mixtures, predicted, the mean
of the best ones kept (a mean of feasible mixtures is feasible: the set is convex).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

#: rounding allowed on the KL limit (a mixture at KL 1e-17 from natural is within --max-kl 0)
KL_TOL = 1e-12


@dataclass(frozen=True)
class Constraints:
    """``natural`` token shares ``[K]`` (sum 1), ``caps`` ``[K]`` and the KL limit (None: none)."""

    natural: np.ndarray
    caps: np.ndarray
    max_kl: float | None = None

    def violations(self, w: np.ndarray, tol: float = 1e-9) -> list[str]:
        """What ``w`` breaks, in words (empty when it is feasible)."""
        out = []
        if abs(float(w.sum()) - 1.0) > tol * len(w) or np.any(w < -tol):
            out.append(f"shares sum to {float(w.sum()):.9f} (or are negative)")
        over = np.flatnonzero(w > self.caps + tol)
        if len(over):
            k = int(over[0])
            out.append(f"cluster {k}: share {w[k]:.6g} above its cap {self.caps[k]:.6g}")
        if self.max_kl is not None and kl_divergence(w, self.natural) > self.max_kl + tol:
            out.append(f"KL to the natural mixture {kl_divergence(w, self.natural):.6g} above {self.max_kl:g}")
        return out


def clip_caps(cluster_tokens, max_repeats, budget_tokens: int) -> np.ndarray:
    """Each cluster's largest share of ``budget_tokens``: ``min(1, tokens_k × clip_k / budget)``."""
    tokens = np.asarray(cluster_tokens, float)
    repeats = np.broadcast_to(np.asarray(max_repeats, float), tokens.shape)
    return np.minimum(tokens * repeats / float(budget_tokens), 1.0)


def constraints_for(cluster_tokens, max_repeats, budget_tokens: int, max_kl: float | None,
                    source: str = "--budget-tokens") -> Constraints:
    """The sampler's constraints for a corpus with ``cluster_tokens`` tokens per cluster; a one-line error when the
    clip cannot supply ``budget_tokens`` at all."""
    tokens = np.asarray(cluster_tokens, float)
    if tokens.sum() <= 0:
        raise InputError(f"{source}: the clusters hold no tokens; check the schedules")
    caps = clip_caps(tokens, max_repeats, budget_tokens)
    if caps.sum() < 1.0:
        possible = int((tokens * np.broadcast_to(np.asarray(max_repeats, float), tokens.shape)).sum())
        raise InputError(f"{source} {budget_tokens:,}: the clip allows at most {possible:,} tokens of this corpus "
                         f"(tokens x max_repeats); lower the budget or raise --max-repeats")
    return Constraints(tokens / tokens.sum(), caps, max_kl)


def kl_divergence(w: np.ndarray, p: np.ndarray) -> float:
    """``KL(w ‖ p)`` in nats (infinite when ``w`` puts weight where ``p`` has none)."""
    w, p = np.asarray(w, float), np.asarray(p, float)
    on = w > 0
    if np.any(p[on] <= 0):
        return float("inf")
    return float(np.sum(w[on] * np.log(w[on] / p[on])))


# --------------------------------------------------------------------------- the exact solver (a linear objective)
def _fill_cheapest(t: np.ndarray, caps: np.ndarray, active: np.ndarray) -> np.ndarray:
    """The linear programme without a KL limit: clusters in increasing ``t`` filled to their caps."""
    w = np.zeros(len(t))
    left = 1.0
    for k in active[np.argsort(t[active], kind="stable")]:
        w[k] = min(caps[k], left)
        left -= w[k]
        if left <= 0:
            break
    return w


def _tilted(t: np.ndarray, c: Constraints, active: np.ndarray, lam: float) -> np.ndarray:
    """``w_k = min(cap_k, natural_k · exp(-t_k / lam) · Z)`` on ``active``, ``Z`` set so the shares sum to 1."""
    a = np.log(c.natural[active]) - t[active] / lam
    a -= a.max()
    log_caps = np.log(c.caps[active])
    lo, hi = -float(np.log(np.exp(a).sum())), float((log_caps - a).max())
    caps = c.caps[active]
    for _ in range(200):  # bisection on log Z: the capped sum grows with Z
        mid = 0.5 * (lo + hi)
        if np.exp(np.minimum(a + mid, log_caps)).sum() < 1.0:
            lo = mid
        else:
            hi = mid
    w = np.zeros(len(t))
    w[active] = np.minimum(np.exp(np.minimum(a + hi, log_caps)), caps)
    return w / w.sum()


def closest_feasible(c: Constraints) -> np.ndarray:
    """The mixture within the caps closest to ``natural`` in KL: ``natural`` itself when the clip allows it (one
    ``max_repeats`` for every cluster and a reachable budget), else ``natural`` with the clusters over their caps
    held at them. A one-line error when even it is farther than ``max_kl``."""
    active = np.flatnonzero((c.natural > 0) & (c.caps > 0))
    w = _tilted(np.zeros(len(c.natural)), c, active, 1.0)
    if c.max_kl is not None and kl_divergence(w, c.natural) > c.max_kl + KL_TOL:
        raise InputError(f"--max-kl {c.max_kl:g}: the clusters' clips keep every mixture at least "
                         f"{kl_divergence(w, c.natural):.4g} from the natural one; raise --max-kl (or the clips)")
    return w


def minimise_linear(t, constraints: Constraints) -> np.ndarray:
    """The feasible mixture with the smallest ``t · w`` (exact up to bisection precision)."""
    t = np.asarray(t, float)
    c = constraints
    active = np.flatnonzero((c.natural > 0) & (c.caps > 0))
    closest_feasible(c)  # refuses an empty feasible set
    cheapest = _fill_cheapest(t, c.caps, active)
    if c.max_kl is None or kl_divergence(cheapest, c.natural) <= c.max_kl + KL_TOL:
        return cheapest
    scale = float(np.ptp(t[active])) or 1.0
    lo, hi = np.log(scale * 1e-8), np.log(scale * 1e8)  # log lambda: small = greedy, large = natural
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if kl_divergence(_tilted(t, c, active, float(np.exp(mid))), c.natural) > c.max_kl + KL_TOL:
            lo = mid
        else:
            hi = mid
    return _tilted(t, c, active, float(np.exp(hi)))


# --------------------------------------------------------------------------- the random search (any model)
def _feasible_rows(w: np.ndarray, c: Constraints, tol: float = 1e-12) -> np.ndarray:
    """Which rows of ``w`` ``[n, K]`` are feasible (vectorised :meth:`Constraints.violations`)."""
    ok = np.all(w <= c.caps + tol, axis=1) & np.all(w >= -tol, axis=1)
    if c.max_kl is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(w > 0, w * np.log(w / c.natural), 0.0)
        ok &= terms.sum(axis=1) <= c.max_kl + KL_TOL
    return ok


def pull_toward(anchor: np.ndarray, w: np.ndarray, c: Constraints) -> np.ndarray:
    """Each row of ``w`` moved along the segment ``anchor -> w`` to its farthest feasible point (``anchor``
    feasible; the feasible set is convex, so the feasible part of a segment is one piece)."""
    lo, hi = np.zeros(len(w)), np.ones(len(w))
    whole = _feasible_rows(w, c)
    lo[whole] = 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        ok = _feasible_rows(anchor + mid[:, None] * (w - anchor), c)
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    return anchor + lo[:, None] * (w - anchor)


def random_feasible(c: Constraints, n: int, seed: int) -> np.ndarray:
    """``n`` feasible mixtures ``[n, K]``: Dirichlet draws over the clusters the corpus has (spread from near
    ``natural`` to the corners), each pulled toward :func:`closest_feasible` until it is feasible."""
    rng = np.random.default_rng(seed)
    active = np.flatnonzero((c.natural > 0) & (c.caps > 0))
    concentration = 10.0 ** rng.uniform(-1, 2, n)
    draws = np.zeros((n, len(c.natural)))
    alpha = np.maximum(len(active) * c.natural[active], 1e-3)
    gammas = np.asarray(rng.standard_gamma(np.maximum(concentration[:, None] * alpha[None, :], 1e-3)))
    draws[:, active] = gammas / np.maximum(gammas.sum(axis=1, keepdims=True), 1e-300)
    return pull_toward(closest_feasible(c), draws, c)


def search(predict, c: Constraints, *, n: int = 4096, top: int = 64, seed: int = 0) -> np.ndarray:
    """RegMix's search: the mean of the ``top`` mixtures of ``n`` random feasible ones with the lowest
    ``predict`` (the feasible mixture closest to ``natural`` among them), which is feasible too; the best
    single candidate instead when the mean is predicted worse than it."""
    candidates = np.vstack([closest_feasible(c)[None, :], random_feasible(c, n, seed)])
    predicted = predict(candidates)
    order = np.argsort(predicted, kind="stable")
    mean = candidates[order[:top]].mean(axis=0)
    return mean if predict(mean[None, :])[0] <= predicted[order[0]] else candidates[order[0]]
