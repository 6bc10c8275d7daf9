"""Spherical k-means with faiss: devices, greedy k-means++ seeding, training.

Training is faiss's ``Kmeans`` (inner product, centroids re-normalised after every update, one
run) on a training sample, started from given centroids: by default greedy k-means++
(scikit-learn's ``KMeans`` seeding, :func:`greedy_kmeanspp_rows`, run on a sub-sample of
:data:`INIT_POINTS_PER_CENTROID` ``* k`` points); ``init="random"`` is the paper's and faiss's
start from random training points. Why greedy k-means++ and why 10 iterations by default:
docs/PERFORMANCE.md ("Clustering").

During training faiss re-seeds an empty centroid by splitting a large cluster, so every
centroid owns training points; ``splits`` counts those events.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..errors import InputError

#: default k-means iterations (the reference code uses 300)
DEFAULT_ITERS = 10
#: default training points per centroid (faiss's ``max_points_per_centroid``)
POINTS_PER_CENTROID = 256
#: faiss warns below this many training points per centroid
MIN_POINTS_PER_CENTROID = 39
DEVICES = ("auto", "cpu", "cuda")
#: centroid initialisations: ``greedy-kmeans++`` (ours, scikit-learn's seeding), ``random`` training
#: points (the paper, faiss's default), faiss's ``kmeans++`` (plain D²-weighted sampling) or ``afkmc2``
INITS = ("greedy-kmeans++", "random", "kmeans++", "afkmc2")
GREEDY_INIT = "greedy-kmeans++"
DEFAULT_INIT = GREEDY_INIT
#: greedy k-means++ seeds on at most this many training points per centroid
INIT_POINTS_PER_CENTROID = 32


# --------------------------------------------------------------------------- devices
def gpu_count() -> int:
    """GPUs faiss sees (0 without faiss-gpu or with a broken CUDA setup)."""
    import faiss

    try:
        return int(faiss.get_num_gpus()) if hasattr(faiss, "StandardGpuResources") else 0
    except Exception:  # noqa: BLE001 - a broken CUDA setup means: no GPU
        return 0


def gpu_available() -> bool:
    """True when faiss was built with GPU support and sees at least one GPU."""
    return gpu_count() > 0


def check_device_name(device: str) -> None:
    """``--device``: auto, cpu, cuda or cuda:N (one line otherwise)."""
    d = device.lower()
    if d in DEVICES or (d.startswith("cuda:") and d[5:].isdigit()):
        return
    raise InputError(f"--device {device}: not a device; use auto, cpu, cuda or cuda:N")


def gpu_index(device: str) -> int:
    """The GPU of ``cuda`` (0) or ``cuda:N`` (N)."""
    d = device.lower()
    return int(d[5:]) if d.startswith("cuda:") else 0


def faiss_device(device: str) -> str:
    """``auto`` -> ``cuda`` when faiss-gpu sees a GPU, else ``cpu``; ``cuda``/``cuda:N`` without it is an error.

    Returns ``cpu`` or ``cuda`` (what the manifest records: which GPU does not change the result).
    """
    check_device_name(device)
    d = device.lower()
    if d == "cpu":
        return "cpu"
    gpus = gpu_count()
    if d == "auto":
        return "cuda" if gpus else "cpu"
    if not gpus:
        raise InputError(f"--device {device}: faiss sees no GPU (is faiss-gpu installed, e.g. `make install-gpu`, "
                         f"and a GPU visible?); use --device cpu or auto")
    if gpu_index(d) >= gpus:
        raise InputError(f"--device {device}: faiss sees {gpus} GPU(s), cuda:0..cuda:{gpus - 1}; "
                         f"use one of those (or check CUDA_VISIBLE_DEVICES)")
    return "cuda"


def flat_ip_index(dim: int, gpu: bool, device: int = 0):
    """An exact inner-product index (``IndexFlatIP``), on GPU ``device`` when ``gpu``."""
    import faiss

    if not gpu:
        return faiss.IndexFlatIP(dim)
    res = faiss.StandardGpuResources()
    cfg = faiss.GpuIndexFlatConfig()
    cfg.device = int(device)
    index: Any = faiss.GpuIndexFlatIP(res, dim, cfg)  # a SWIG object that takes new attributes:
    index._clusterclip_resources = res  # keep the resources alive as long as the index
    return index


def default_threads() -> int:
    import faiss

    return int(faiss.omp_get_max_threads())


# --------------------------------------------------------------------------- greedy k-means++
def greedy_kmeanspp_rows(
    x: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    n_local_trials: int | None = None,
) -> np.ndarray:
    """Greedy k-means++ seeding on unit vectors; returns the ``k`` chosen row numbers of ``x``.

    The algorithm of scikit-learn's ``KMeans`` default (Arthur & Vassilvitskii 2007 with the
    greedy refinement of their paper's experiments): the first centre is a uniformly random
    row; each next one is the best of ``n_local_trials`` (default ``2 + ln k``) candidates
    drawn with probability proportional to the squared distance to the nearest centre so
    far, "best" meaning the one that leaves the smallest potential (sum of squared
    distances). For unit vectors the squared distance is ``2 - 2 cos``, so this is also the
    seeding for spherical k-means.

    Vectorised: one ``[trials, D] x [D, n]`` product per centre, and the per-row distance to
    the nearest centre is kept up to date incrementally; cost ``O(k * trials * n * D)``.
    Seeded with ``np.random.default_rng(seed)``; the rows are distinct (when ``x`` has fewer
    than ``k`` distinct vectors the rest are distinct rows drawn at random among duplicates).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if not 1 <= k <= n:
        raise InputError(f"k={k} must be between 1 and the number of points ({n})")
    trials = int(n_local_trials) if n_local_trials is not None else 2 + int(math.log(k))
    rng = np.random.default_rng(seed)
    chosen: np.ndarray = np.empty(k, dtype=np.int64)
    taken: np.ndarray = np.zeros(n, dtype=bool)
    first = int(rng.integers(n))
    chosen[0], taken[first] = first, True
    # squared distance of every row to its nearest centre (float32; sums in float64)
    closest = np.maximum(2.0 - 2.0 * (x @ x[first]), 0.0).astype(np.float32)
    closest[first] = 0.0
    cum: np.ndarray = np.empty(n, dtype=np.float64)
    for c in range(1, k):
        np.cumsum(closest, dtype=np.float64, out=cum)
        potential = float(cum[-1])
        if not potential > 0.0:  # every row coincides with a centre: fewer distinct vectors than k
            rest = np.flatnonzero(~taken)
            chosen[c:] = rng.choice(rest, size=k - c, replace=False)
            break
        # a draw r in [0, potential) picks the first row whose cumulative weight exceeds r, so
        # rows of weight 0 (the centres themselves, their duplicates) are never drawn
        draws = np.minimum(rng.random(trials) * potential, np.nextafter(potential, 0.0))
        cand = np.searchsorted(cum, draws, side="right")
        cand = np.unique(cand)  # sorted, so the result does not depend on the draw order
        dist = x[cand] @ x.T  # [trials, n] cosines
        dist *= -2.0
        dist += 2.0
        np.maximum(dist, 0.0, out=dist)
        dist[np.arange(len(cand)), cand] = 0.0
        np.minimum(dist, closest[None, :], out=dist)
        pots = dist.sum(axis=1, dtype=np.float64)
        best = int(np.argmin(pots))
        chosen[c] = int(cand[best])
        taken[chosen[c]] = True
        closest = dist[best].copy()
    return chosen


def greedy_kmeanspp(
    x: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    max_points: int | None = None,
    n_local_trials: int | None = None,
) -> tuple[np.ndarray, int]:
    """Greedy k-means++ initial centroids for spherical k-means: ``(centroids [k, D] float32, rows used)``.

    Seeds on a uniform sub-sample (without replacement, seeded) of at most ``max_points``
    rows of ``x`` (default ``INIT_POINTS_PER_CENTROID * k``; all rows when ``x`` is smaller),
    see :func:`greedy_kmeanspp_rows`. The centroids are rows of ``x`` (L2-normalised again,
    so they are unit vectors to float32 precision).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    m = INIT_POINTS_PER_CENTROID * k if max_points is None else int(max_points)
    m = min(n, max(k, m))
    rng = np.random.default_rng(seed)
    if m < n:
        sub = np.sort(rng.choice(n, size=m, replace=False))
        xs = x[sub]
    else:
        sub, xs = None, x
    rows = greedy_kmeanspp_rows(xs, k, seed=int(rng.integers(2**31)), n_local_trials=n_local_trials)
    if sub is not None:
        rows = sub[rows]
    c = x[rows].astype(np.float64)
    c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return c.astype(np.float32), m


# --------------------------------------------------------------------------- training
def train_spherical_kmeans_with_stats(
    x: np.ndarray,
    k: int,
    *,
    iters: int = DEFAULT_ITERS,
    seed: int = 0,
    gpu: bool = False,
    gpu_device: int = 0,
    init: str = DEFAULT_INIT,
    init_points: int | None = None,
    verbose: bool = False,
) -> tuple[np.ndarray, dict]:
    """Like :func:`train_spherical_kmeans`, also returning ``{"objective": [...per iteration], "splits": n, ...}``.

    ``objective`` is faiss's training objective per iteration: the sum over the training
    points of the inner product with their centroid (higher is better). ``splits`` counts
    how often an empty centroid was re-seeded by splitting a large cluster. With
    ``init="greedy-kmeans++"`` also ``init_points`` (the rows the seeding ran on) and
    ``init_seconds``.
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if not 1 <= k <= n:
        raise InputError(f"k={k} must be between 1 and the number of training points ({n})")
    extra: dict = {}
    initial = None
    if init == GREEDY_INIT:
        t0 = time.perf_counter()
        initial, extra["init_points"] = greedy_kmeanspp(x, k, seed=seed, max_points=init_points)
        extra["init_seconds"] = round(time.perf_counter() - t0, 3)
    init_method = {
        GREEDY_INIT: faiss.ClusteringInitMethod_RANDOM,  # unused: all k centroids are given
        "random": faiss.ClusteringInitMethod_RANDOM,
        "kmeans++": faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
        "afkmc2": faiss.ClusteringInitMethod_AFK_MC2,
    }[init]
    # the caller samples the training points itself: no second subsampling inside faiss, and no
    # faiss warning on stderr for few points per centroid (the step prints its own hint)
    kmeans = faiss.Kmeans(d, k, niter=int(iters), nredo=1, seed=int(seed), spherical=True, verbose=bool(verbose),
                          init_method=init_method, max_points_per_centroid=max(1, -(-n // k)),
                          min_points_per_centroid=1)
    if gpu:  # one GPU, exact inner product (faiss.Kmeans(gpu=True) would spread over every GPU)
        kmeans.index = flat_ip_index(d, True, gpu_device)
    kmeans.train(x, init_centroids=initial)
    trained, stats = kmeans.centroids, kmeans.iteration_stats
    assert trained is not None and stats is not None  # set by train()
    centroids = np.ascontiguousarray(trained.reshape(k, d), dtype=np.float32)
    return centroids, {
        "objective": [float(s["obj"]) for s in stats],
        "splits": int(sum(s["nsplit"] for s in stats)),
        **extra,
    }


def train_spherical_kmeans(x: np.ndarray, k: int, **kwargs) -> np.ndarray:
    """Spherical k-means centroids, float32 ``[k, D]`` of unit norm (see :func:`train_spherical_kmeans_with_stats`).

    ``x``: ``[n, D]`` L2-normalised vectors (``n >= k``). Seeded: the same ``x``, ``k``,
    ``iters`` and ``seed`` give the same centroids (on the same machine and thread count).
    """
    return train_spherical_kmeans_with_stats(x, k, **kwargs)[0]


def default_k2(k: int) -> int:
    """Second-level clusters for ``levels=2``: about the square root of ``k``."""
    return max(1, int(round(math.sqrt(k))))
