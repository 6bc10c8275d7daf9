"""What each sampler does to the mix: expected shares per cluster, and what a schedule really did.

:func:`expected_shares` needs only the cluster sizes (K numbers, never the N labels):

- ``random``: share ``∝ size``;
- ``uniform``: share ``∝ size ** alpha`` over the non-empty clusters (``alpha = 0``: ``1/K``);
- ``clusterclip``: clusters are drawn ``∝ weight`` among those still in the pool and cluster
  ``c`` leaves after ``max_repeats × size_c`` draws, so in expectation every active cluster
  grows at the rate of its weight until it hits its cap. The expected counts are the
  "water-filling" solution ``count_c = min(max_repeats × size_c, level × weight_c)`` with
  ``level`` set so that the counts sum to the budget. It is the expectation of
  :func:`clusterclip.sampling.plan_schedule`'s counts up to the randomness of the exit times.

:func:`law_counts` is the same water-filling under a schedule's own law (``--balance tokens``,
``--weights``, per-cluster clips, ``--budget-tokens``); token shares are expected samples times each
cluster's mean sample length.

What a schedule really did is counted from its ``order.parquet`` by :mod:`.timeline`.
"""

from __future__ import annotations

import numpy as np

from ..schedule import law


def cluster_weights(sizes: np.ndarray, alpha: float) -> np.ndarray:
    """``size ** alpha`` for non-empty clusters, 0 for empty ones (``alpha = 0``: 1 each)."""
    sizes = np.asarray(sizes, np.float64)
    w = np.zeros_like(sizes)
    nonempty = sizes > 0
    w[nonempty] = sizes[nonempty] ** alpha
    return w


def expected_counts(sizes, *, sampler: str, samples: int, max_repeats=4, alpha: float = 0.0) -> np.ndarray:
    """Expected samples per cluster (float64 ``[K]``) for a budget of ``samples`` (see the module docstring)."""
    if sampler not in ("random", "uniform", "clusterclip"):
        raise ValueError(f"unknown sampler {sampler!r}")
    return law.expected_counts(sizes, None, sampler=sampler, samples=samples, max_repeats=max_repeats, alpha=alpha)


#: the water-filling of the clip and a schedule's own law: :mod:`clusterclip.schedule.law` (one implementation)
water_fill = law.water_fill
shares_of = law.shares_of


def law_counts(sizes, mean_tokens, *, sampler: str, samples: int, max_repeats=4, alpha: float = 0.0,
               balance: str = "samples", multipliers=None, token_budget=None) -> np.ndarray:
    """Expected samples per cluster under a schedule's own law (``--balance``, ``--weights``, per-cluster
    clips, ``--budget-tokens``): :func:`clusterclip.schedule.law.expected_counts`."""
    return law.expected_counts(sizes, mean_tokens, sampler=sampler, samples=samples, max_repeats=max_repeats,
                               alpha=alpha, balance=balance, multipliers=multipliers, token_budget=token_budget)


def expected_shares(sizes, **kwargs) -> np.ndarray:
    """:func:`expected_counts` divided by their sum (all zeros for an empty corpus)."""
    return shares_of(expected_counts(sizes, **kwargs))
