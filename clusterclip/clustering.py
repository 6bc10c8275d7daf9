"""The ``cluster`` step: spherical k-means over the document embeddings (ClusterClip §1.1).

What it does, as in the reference code of Shao et al. (2024), with faiss:

1. draw a uniform random training sample (without replacement, seeded) of at most
   ``max_train_points`` rows (default ``256 * k``, faiss's ``max_points_per_centroid``);
2. train spherical k-means on it: inner-product metric, centroids re-normalised after
   every update, one run (faiss ``Clustering`` with ``spherical=True``; on a GPU when
   faiss-gpu sees one), initialised by greedy k-means++ (default, see below) or from random
   training points (the paper);
3. assign **every** document to its most similar centroid (exact maximum inner product,
   ``IndexFlatIP``), reading the memory-mapped embeddings in bounded chunks, so the corpus
   may be larger than RAM;
4. write ``centroids.npy``, ``assignments.parquet``, ``clusters.parquet`` and, last,
   ``manifest.json``.

Iterations: the reference runs 300; we default to :data:`DEFAULT_ITERS` (10). Spherical
k-means from a greedy k-means++ start converges fast, and faiss stops by itself once the
objective no longer changes: on the benchmark data (``scripts/bench_cluster.py``, 200k x 384,
k=1000) 10 iterations end within 0.01% of the mean cosine of 20 and of scikit-learn's
converged ``KMeans`` (5 iterations: -0.08%, 8: -0.01%). Pass ``--iters 300`` to match the
paper; it costs only the iterations that are needed before convergence.

Initialisation (``--init``): the default is ``greedy-kmeans++`` (our choice; the paper and
faiss start from random training points, ``--init random``). It is scikit-learn's
``KMeans`` seeding: D²-sampling where each centre is the best of ``2 + ln k`` sampled
candidates (:func:`greedy_kmeanspp_rows`), run on a seeded sub-sample of at most
:data:`INIT_POINTS_PER_CENTROID` ``* k`` training points and handed to faiss as its initial
centroids. Why, measured with ``scripts/bench_cluster.py`` (200k x 384, k=1000, topics of
heavy-tailed sizes, 20 iterations, 2 cores): random init ends 1.7% below the objective
(mean cosine) of scikit-learn's ``KMeans`` (0.6265 vs 0.6372 over seeds 0-2), because on
uneven topics random points over-seed the big topics and leave small ones merged, which
Lloyd iterations do not undo; faiss's own ``kmeans++`` (plain D²-sampling, one candidate)
and ``afkmc2`` did not close that gap. Greedy k-means++ does (0.6369, -0.05%) and adds
about 3 s to a 15 s training. Seeding sub-sample per centroid -> mean cosine, seeding time:
16 -> 0.6364, 1.2 s; 32 -> 0.6369, 2.8 s; 64 -> 0.6370, 6 s; all 200 -> 0.6368 (one seed),
35 s: beyond 32 the gain is below the seed-to-seed noise (about 0.05%) while the cost
doubles. The cost grows like ``k**2`` (as training's does): about 15% of the training time.
``settings.init`` records the choice, ``statistics.init_points`` the sub-sample size.

Empty clusters: during training faiss re-seeds an empty centroid by splitting a large
cluster, so every centroid owns training points. A centroid can still end up with no
document once *all* documents are assigned (rare; e.g. duplicated vectors). Such clusters
are **kept** with ``size`` 0 and a null ``mean_similarity`` in ``clusters.parquet``, so
cluster ids stay the row numbers of ``centroids.npy``; ``statistics.empty_clusters`` counts
them and ``statistics.empty_cluster_ids`` lists them.

Determinism: the same embeddings, settings and seed give byte-identical outputs on the
same machine with the same number of threads (verified by the tests). The assignment is
computed in fixed 4096-row blocks aligned to absolute row numbers, so ``chunk_rows`` never
changes the result, and the similarities are recomputed exactly per row (float64, then
rounded), so they do not depend on the thread count either. faiss's multi-threaded BLAS
can round differently with another thread count or CPU, which may move documents that are
(near) tied between two centroids and, through training, the centroids themselves; the
thread count used is recorded in ``statistics.threads``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .artifacts import (
    EmbeddingStore,
    build_manifest,
    finish_output_dir,
    outputs_record,
    prepare_output_dir,
    read_manifest,
    save_npy_atomic,
    sha256_file,
    upstream_record,
    write_json_atomic,
    write_parquet_atomic,
)
from .errors import InputError, MismatchError

#: default k-means iterations (the reference uses 300; see the module docstring)
DEFAULT_ITERS = 10
#: default training points per centroid (faiss's ``max_points_per_centroid``)
POINTS_PER_CENTROID = 256
#: faiss warns below this many training points per centroid
MIN_POINTS_PER_CENTROID = 39
#: rows per assignment block; results never depend on ``chunk_rows`` because every block is
#: aligned to a multiple of this (faiss's BLAS query block, ``distance_compute_blas_query_bs``)
BLOCK_ROWS = 4096
#: default rows read from the embeddings at once (a multiple of BLOCK_ROWS)
DEFAULT_CHUNK_ROWS = 65536
#: tolerance on the L2 norm of an embedding (they must be L2-normalised)
NORM_TOLERANCE = 1e-2

OUTPUT_FILES = ("centroids.npy", "assignments.parquet", "clusters.parquet")
TRAIN_STATE = ".cluster-train.json"
DEVICES = ("auto", "cpu", "cuda")
#: centroid initialisations: ``greedy-kmeans++`` (ours, scikit-learn's seeding, see
#: :func:`greedy_kmeanspp_rows`), ``random`` training points (the paper, faiss's default),
#: faiss's ``kmeans++`` (plain D²-weighted sampling) or ``afkmc2`` (its MCMC approximation)
INITS = ("greedy-kmeans++", "random", "kmeans++", "afkmc2")
GREEDY_INIT = "greedy-kmeans++"
#: the ``cluster`` step's default initialisation (the low-level trainers default to ``random``)
DEFAULT_INIT = GREEDY_INIT
#: greedy k-means++ seeds on at most this many training points per centroid (see the docstring)
INIT_POINTS_PER_CENTROID = 32


# --------------------------------------------------------------------------- devices
def gpu_available() -> bool:
    """True when faiss was built with GPU support and sees at least one GPU."""
    import faiss

    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:  # noqa: BLE001 - a broken CUDA setup means: no GPU
        return False


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when faiss-gpu sees a GPU, else ``cpu``; ``cuda`` without one is an error."""
    if device not in DEVICES:
        raise InputError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    if gpu_available():
        return "cuda"
    if device == "cuda":
        raise InputError(
            "--device cuda: faiss sees no GPU (is faiss-gpu installed, e.g. `pip install clusterclip[gpu]`, "
            "and a GPU visible?); use --device cpu or auto"
        )
    return "cpu"


def _gpu_flat_ip(dim: int):
    """A ``GpuIndexFlatIP`` on GPU 0 (with its resources kept alive on the index)."""
    import faiss

    res = faiss.StandardGpuResources()
    cfg = faiss.GpuIndexFlatConfig()
    cfg.device = 0
    index = faiss.GpuIndexFlatIP(res, dim, cfg)
    index._clusterclip_resources = res  # keep the resources alive as long as the index
    return index


def _flat_ip(dim: int, gpu: bool):
    import faiss

    return _gpu_flat_ip(dim) if gpu else faiss.IndexFlatIP(dim)


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
    chosen = np.empty(k, dtype=np.int64)
    taken = np.zeros(n, dtype=bool)
    first = int(rng.integers(n))
    chosen[0], taken[first] = first, True
    # squared distance of every row to its nearest centre (float32; sums in float64)
    closest = np.maximum(2.0 - 2.0 * (x @ x[first]), 0.0).astype(np.float32)
    closest[first] = 0.0
    cum = np.empty(n, dtype=np.float64)
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
    if init not in INITS:
        raise InputError(f"--init {init!r}: choose one of {', '.join(INITS)}")
    extra: dict = {}
    initial = None
    if init == GREEDY_INIT:
        t0 = time.perf_counter()
        initial, extra["init_points"] = greedy_kmeanspp(x, k, seed=seed, max_points=init_points)
        extra["init_seconds"] = round(time.perf_counter() - t0, 3)
    cp = faiss.ClusteringParameters()
    cp.niter = int(iters)
    cp.nredo = 1
    cp.seed = int(seed)
    cp.spherical = True
    cp.verbose = bool(verbose)
    cp.init_method = {
        GREEDY_INIT: faiss.ClusteringInitMethod_RANDOM,  # unused: all k centroids are given
        "random": faiss.ClusteringInitMethod_RANDOM,
        "kmeans++": faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
        "afkmc2": faiss.ClusteringInitMethod_AFK_MC2,
    }[init]
    # the caller samples the training points itself: no second subsampling inside faiss,
    # and no faiss warning on stderr for few points per centroid (we log our own hint)
    cp.max_points_per_centroid = max(1, -(-n // k))
    cp.min_points_per_centroid = 1
    clus = faiss.Clustering(d, k, cp)
    if initial is not None:
        # faiss starts from the centroids already in ``clus.centroids`` (all k of them here)
        faiss.copy_array_to_vector(np.ascontiguousarray(initial, dtype=np.float32).ravel(), clus.centroids)
    index = _flat_ip(d, gpu)
    clus.train(x, index)
    centroids = faiss.vector_to_array(clus.centroids).reshape(k, d).astype(np.float32, copy=False)
    stats = clus.iteration_stats
    per_iter = [stats.at(i) for i in range(stats.size())]
    return np.ascontiguousarray(centroids), {
        "objective": [float(s.obj) for s in per_iter],
        "splits": int(sum(s.nsplit for s in per_iter)),
        **extra,
    }


def train_spherical_kmeans(
    x: np.ndarray,
    k: int,
    *,
    iters: int = DEFAULT_ITERS,
    seed: int = 0,
    gpu: bool = False,
    init: str = DEFAULT_INIT,
    init_points: int | None = None,
    verbose: bool = False,
) -> np.ndarray:
    """Spherical k-means (faiss, inner product, unit-norm centroids, greedy k-means++ init by default, one run).

    ``x``: ``[n, D]`` L2-normalised vectors (``n >= k``). Returns float32 ``[k, D]``
    centroids of unit norm. Seeded: the same ``x``, ``k``, ``iters`` and ``seed`` give the
    same centroids (on the same machine and thread count).
    """
    return train_spherical_kmeans_with_stats(x, k, iters=iters, seed=seed, gpu=gpu, init=init,
                                             init_points=init_points, verbose=verbose)[0]


# --------------------------------------------------------------------------- checks
def _row_location(source, row: int) -> str:
    """``<part file>, row <r> (doc_id <row>)`` for a store, ``embeddings, row <row>`` for an array."""
    if isinstance(source, EmbeddingStore):
        part = int(np.searchsorted(source.offsets, row, side="right") - 1)
        local = row - int(source.offsets[part])
        return f"{source.files[part]}, row {local} (doc_id {row})"
    return f"embeddings, row {row}"


def check_embeddings(x: np.ndarray, start: int = 0, source=None, rows: np.ndarray | None = None) -> None:
    """Raise a one-line :class:`InputError` naming the first NaN/inf, zero-norm or unnormalised row.

    Row ``i`` of ``x`` is document ``start + i``, or ``rows[i]`` when ``rows`` is given.
    """
    def row_of(i: int) -> int:
        return int(rows[i]) if rows is not None else start + i

    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        row = row_of(int(np.argmin(finite)))
        raise InputError(
            f"{_row_location(source, row)}: embedding holds NaN or infinite values; "
            "rerun `clusterclip embed ... --overwrite` (check the model and --dtype)"
        )
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    bad = np.abs(norms - 1.0) > NORM_TOLERANCE
    if bad.any():
        i = int(np.argmax(bad))
        row, norm = row_of(i), float(norms[i])
        if norm < 1e-6:
            what = "embedding has zero norm (an empty or unembeddable document?)"
        else:
            what = f"embedding is not L2-normalised (norm {norm:.4g})"
        raise InputError(f"{_row_location(source, row)}: {what}; rerun `clusterclip embed ... --overwrite`")


# --------------------------------------------------------------------------- assignment
def _exact_similarity(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row dot product with the assigned centroid, in float64 then rounded to float32.

    Independent of BLAS blocking and threads, so it is the same for any chunking.
    """
    out = np.empty(len(x), dtype=np.float32)
    step = 1024
    for s in range(0, len(x), step):
        xs = x[s : s + step]
        cs = centroids[labels[s : s + step]]
        out[s : s + step] = np.einsum("ij,ij->i", xs, cs, dtype=np.float64)
    return out


def assign(
    source,
    centroids: np.ndarray,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    gpu: bool = False,
    *,
    check: bool = True,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Assign every row of ``source`` to its most similar centroid (exact maximum inner product).

    ``source``: an :class:`~clusterclip.artifacts.EmbeddingStore` (memory-mapped parts, read
    ``chunk_rows`` rows at a time, so ``N`` may exceed RAM) or an ``[N, D]`` array. Returns
    ``labels`` int32 ``[N]`` and ``similarity`` float32 ``[N]`` (the dot product with the
    assigned centroid). ``chunk_rows`` is rounded up to a multiple of :data:`BLOCK_ROWS`;
    the result does not depend on it. With ``check`` every row is validated (finite, unit
    norm) and the first bad one is named in the error.
    """
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    k, d = centroids.shape
    n = len(source)
    src_dim = source.dim if isinstance(source, EmbeddingStore) else np.shape(source)[1]
    if src_dim != d:
        raise MismatchError(f"embeddings have dimension {src_dim} but the centroids {d}; use centroids of the same model")
    chunk_rows = max(BLOCK_ROWS, -(-int(chunk_rows) // BLOCK_ROWS) * BLOCK_ROWS)
    index = _flat_ip(d, gpu)
    index.add(centroids)
    labels = np.empty(n, dtype=np.int32)
    similarity = np.empty(n, dtype=np.float32)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="doc", unit_scale=True, desc="assign", file=sys.stderr, dynamic_ncols=True)
    try:
        for start in range(0, n, chunk_rows):
            stop = min(n, start + chunk_rows)
            if isinstance(source, EmbeddingStore):
                x = source.read(start, stop)
            else:
                x = np.ascontiguousarray(source[start:stop], dtype=np.float32)
            if check:
                check_embeddings(x, start, source)
            for b in range(0, stop - start, BLOCK_ROWS):
                xb = x[b : b + BLOCK_ROWS]
                _, idx = index.search(xb, 1)
                lab = idx[:, 0].astype(np.int32)
                if (lab < 0).any():  # faiss returns -1 only for NaN scores; check=False and bad data
                    raise InputError(f"{_row_location(source, start + b + int(np.argmin(lab)))}: no centroid found "
                                     "(NaN embedding?); rerun `clusterclip embed ... --overwrite`")
                labels[start + b : start + b + len(xb)] = lab
                similarity[start + b : start + b + len(xb)] = _exact_similarity(xb, centroids, lab)
            if bar is not None:
                bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()
    return labels, similarity


# --------------------------------------------------------------------------- statistics
def gini(sizes: np.ndarray) -> float:
    """Gini coefficient of the cluster sizes (0 = all equal, -> 1 = one cluster holds all)."""
    s = np.sort(np.asarray(sizes, dtype=np.float64))
    n, total = len(s), s.sum()
    if n == 0 or total == 0:
        return 0.0
    return float((2.0 * np.sum(np.arange(1, n + 1) * s) / (n * total)) - (n + 1) / n)


def size_statistics(sizes: np.ndarray) -> dict:
    sizes = np.asarray(sizes, dtype=np.int64)
    mean = float(sizes.mean())
    return {
        "min": int(sizes.min()),
        "median": float(np.median(sizes)),
        "mean": round(mean, 6),
        "max": int(sizes.max()),
        "cv": round(float(sizes.std() / mean), 6) if mean > 0 else 0.0,
        "gini": round(gini(sizes), 6),
    }


# --------------------------------------------------------------------------- the step
def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def _check_embed_dir(emb_dir: Path) -> tuple[dict, EmbeddingStore]:
    import pyarrow.parquet as pq

    manifest = read_manifest(emb_dir, "embed")
    stats = manifest.get("statistics") or {}
    n_docs, dim = stats.get("n_docs"), stats.get("dim")
    if not isinstance(n_docs, int):
        raise InputError(f"{emb_dir / 'manifest.json'}: has no statistics.n_docs; rerun `clusterclip embed ... --overwrite`")
    store = EmbeddingStore(emb_dir)
    if store.n != n_docs:
        raise MismatchError(
            f"{emb_dir}: the embeddings-*.npy parts hold {store.n} rows but manifest.json says n_docs={n_docs}; "
            f"a part is missing or extra: rerun `clusterclip embed ... --overwrite`"
        )
    if isinstance(dim, int) and store.dim != dim:
        raise MismatchError(
            f"{emb_dir}: the embeddings have dimension {store.dim} but manifest.json says dim={dim}; "
            f"rerun `clusterclip embed ... --overwrite`"
        )
    docs = emb_dir / "docs.parquet"
    try:
        n_rows = pq.ParquetFile(docs).metadata.num_rows
    except FileNotFoundError:
        raise InputError(f"{docs}: missing; rerun `clusterclip embed ... --overwrite`") from None
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a broken file
        raise InputError(f"{docs}: unreadable ({str(e).splitlines()[0]}); rerun `clusterclip embed ... --overwrite`") from None
    if n_rows != n_docs:
        raise MismatchError(
            f"{docs}: has {n_rows} rows but manifest.json says n_docs={n_docs} (and the embeddings hold {store.n}); "
            f"rerun `clusterclip embed ... --overwrite`"
        )
    return manifest, store


def _training_sample(store: EmbeddingStore, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` rows drawn uniformly without replacement (seeded), in row order; all rows when ``m >= N``."""
    n = store.n
    if m >= n:
        rows = np.arange(n, dtype=np.int64)
        return rows, store.read(0, n)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)
    return rows, store.take(rows)


def _load_train_state(out: Path) -> dict | None:
    """The trained centroids of an interrupted run of the same job, when they are intact."""
    state_path, cpath = out / TRAIN_STATE, out / "centroids.npy"
    if not (state_path.exists() and cpath.exists()):
        return None
    try:
        state = json.loads(state_path.read_text("utf-8"))
        if state.get("centroids_sha256") != sha256_file(cpath):
            return None
        state["centroids"] = np.load(cpath, allow_pickle=False)
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    return state


def _check_training_memory(m: int, dim: int) -> None:
    """Refuse a training sample that cannot fit in this machine's memory, with the fix."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    need = m * dim * 4
    if need > 0.6 * ram:
        fits = int(0.5 * ram // (dim * 4))
        raise InputError(
            f"training on {m} documents of dimension {dim} needs about {need / 2**30:.1f} GiB of memory but this "
            f"machine has {ram / 2**30:.1f} GiB; pass --max-train-points {fits} or lower (or a smaller --k)"
        )


def default_k2(k: int) -> int:
    """Second-level clusters for ``--levels 2``: about the square root of ``k``."""
    return max(1, int(round(math.sqrt(k))))


def cluster_embeddings(
    emb_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    k: int,
    iters: int = DEFAULT_ITERS,
    seed: int = 0,
    max_train_points: int | None = None,
    device: str = "auto",
    init: str = DEFAULT_INIT,
    levels: int = 1,
    k2: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Cluster the embeddings of the ``embed`` directory ``emb_dir`` into ``out_dir``; return the manifest.

    See the module docstring and ``clusterclip cluster --help``. When ``out_dir`` already
    holds this finished job, nothing is done and the manifest is returned with
    ``"already_done": True``; an interrupted run of the same job resumes (training is
    skipped when its centroids were saved).

    ``threads`` pins faiss's CPU thread count (default: all cores). It is not a setting of
    the job (a rerun with another value is "already done"), but results are bit-identical
    only for the same thread count and CPU; it is recorded in ``statistics.threads``.

    ``levels=2`` adds a second, coarser level (hierarchical k-means in the spirit of Vo et
    al. 2024): the ``k`` centroids are clustered again, unweighted, into ``k2`` (default
    about ``sqrt(k)``) groups with the same spherical k-means; ``clusters.parquet`` then has
    a ``parent`` column and ``centroids-level2.npy`` holds the second-level centroids. The
    documents' ``cluster`` stays the first (fine) level, which is what ``schedule`` uses.
    """
    say = log or (lambda m: _log(progress, m))
    emb_dir, out = Path(emb_dir), Path(out_dir)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise InputError(f"--k {k}: the number of clusters must be at least 1")
    if iters < 1:
        raise InputError(f"--iters {iters}: must be at least 1")
    if not 0 <= seed < 2**31:
        raise InputError(f"--seed {seed}: must be between 0 and 2147483647")
    if init not in INITS:
        raise InputError(f"--init {init!r}: choose one of {', '.join(INITS)}")
    if chunk_rows < 1:
        raise InputError(f"--chunk-rows {chunk_rows}: must be at least 1")
    if threads is not None and threads < 1:
        raise InputError(f"--threads {threads}: must be at least 1")
    if levels not in (1, 2):
        raise InputError(f"--levels {levels}: choose 1 or 2")
    k = int(k)
    if levels == 2:
        k2 = default_k2(k) if k2 is None else int(k2)
        if not 1 <= k2 <= k:
            raise InputError(f"--k2 {k2}: the second level needs between 1 and --k ({k}) clusters")
    elif k2 is not None:
        raise InputError("--k2 is only used with --levels 2; add --levels 2 or drop --k2")

    _, store = _check_embed_dir(emb_dir)
    n = store.n
    if k > n:
        raise InputError(f"k={k} is larger than the number of documents (N={n}); lower --k")
    if max_train_points is None:
        max_train_points = POINTS_PER_CENTROID * k
    if max_train_points < k:
        raise InputError(f"--max-train-points {max_train_points}: must be at least --k ({k})")
    train_points = min(int(max_train_points), n)
    _check_training_memory(train_points, store.dim)
    resolved = resolve_device(device)
    gpu = resolved == "cuda"

    settings = {
        "k": k,
        "iters": int(iters),
        "seed": int(seed),
        "max_train_points": int(max_train_points),
        "device": resolved,
        "init": init,
        "levels": int(levels),
        "k2": k2 if levels == 2 else None,
        "algorithm": "spherical k-means (faiss), inner product, 1 run",
    }
    inputs = {"embed": upstream_record(emb_dir, "embed")}
    job = {"step": "cluster", "settings": settings, "inputs": inputs}
    state = prepare_output_dir(out, job, overwrite=overwrite)
    if state == "done":
        return read_manifest(out, "cluster") | {"already_done": True}

    import faiss

    previous_threads = default_threads()
    if threads is not None:
        faiss.omp_set_num_threads(int(threads))
    try:
        return _run(store, out, state, settings, inputs, k=k, k2=k2, levels=levels, iters=iters, seed=seed,
                    init=init, train_points=train_points, gpu=gpu, resolved=resolved, chunk_rows=chunk_rows,
                    progress=progress, say=say)
    finally:
        if threads is not None:
            faiss.omp_set_num_threads(previous_threads)


def _run(store, out, state, settings, inputs, *, k, k2, levels, iters, seed, init, train_points, gpu, resolved,
         chunk_rows, progress, say):
    n = store.n
    threads = 1 if gpu else default_threads()
    # ---- training (skipped when an interrupted run of this job saved its centroids)
    trained = _load_train_state(out) if state == "resume" else None
    if trained is not None:
        centroids = trained["centroids"]
        train_info = {key: trained[key] for key in ("objective", "splits", "init_points") if key in trained}
        say(f"cluster: resuming with the centroids trained by the interrupted run ({out / 'centroids.npy'})")
    else:
        t0 = time.perf_counter()
        rows, x = _training_sample(store, train_points, seed)
        check_embeddings(x, source=store, rows=rows)  # fail fast, before training
        del rows
        if train_points < MIN_POINTS_PER_CENTROID * k:
            say(f"cluster: note: only {train_points / k:.1f} training points per cluster "
                f"(faiss recommends >= {MIN_POINTS_PER_CENTROID}); consider a smaller --k")
        say(f"cluster: training spherical k-means, k={k}, {iters} iterations on {train_points} of {n} "
            f"documents (dim {store.dim}, {init} init, {resolved}{'' if gpu else f', {threads} threads'}) ...")
        centroids, train_info = train_spherical_kmeans_with_stats(x, k, iters=iters, seed=seed, gpu=gpu, init=init)
        del x
        save_npy_atomic(out / "centroids.npy", centroids)
        write_json_atomic(out / TRAIN_STATE, {
            "centroids_sha256": sha256_file(out / "centroids.npy"),
            "train_points": train_points,
            **train_info,
        })
        obj = train_info["objective"][-1] if train_info["objective"] else float("nan")
        say(f"cluster: trained in {time.perf_counter() - t0:.1f}s ({len(train_info['objective'])} iterations), "
            f"mean training similarity {obj / train_points:.4f}")

    # ---- assignment of every document
    labels, similarity = assign(store, centroids, chunk_rows=chunk_rows, gpu=gpu, check=True, progress=progress)
    level2 = None
    if levels == 2:
        # small (k x D): always on the CPU, deterministic
        c2, info2 = train_spherical_kmeans_with_stats(centroids, k2, iters=iters, seed=seed, init=init)
        parent, parent_sim = assign(centroids, c2, check=False)
        level2 = {"centroids": c2, "parent": parent, "similarity": parent_sim, "info": info2}
    return _write_outputs(out, centroids, labels, similarity, settings, inputs, train_info, train_points,
                          threads, level2)


def _write_outputs(out, centroids, labels, similarity, settings, inputs, train_info, train_points, threads,
                   level2=None):
    import pyarrow as pa

    k = len(centroids)
    n = len(labels)
    sizes = np.bincount(labels, minlength=k).astype(np.int64)
    sim_sum = np.bincount(labels, weights=similarity.astype(np.float64), minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_sim = (sim_sum / sizes).astype(np.float32)
    empty = np.nonzero(sizes == 0)[0]

    assignments = pa.table({
        "doc_id": pa.array(np.arange(n, dtype=np.int64)),
        "cluster": pa.array(labels),
        "similarity": pa.array(similarity),
    })
    write_parquet_atomic(out / "assignments.parquet", assignments, row_group_size=1 << 20)
    del assignments
    columns = {
        "cluster": pa.array(np.arange(k, dtype=np.int32)),
        "size": pa.array(sizes),
        "mean_similarity": pa.array(mean_sim, mask=sizes == 0),
    }
    names = list(OUTPUT_FILES)
    if level2 is not None:
        columns["parent"] = pa.array(level2["parent"])
        columns["parent_similarity"] = pa.array(level2["similarity"])
        save_npy_atomic(out / "centroids-level2.npy", level2["centroids"])
        names.append("centroids-level2.npy")
    write_parquet_atomic(out / "clusters.parquet", pa.table(columns))
    if not (out / "centroids.npy").exists():  # only when called with precomputed centroids
        save_npy_atomic(out / "centroids.npy", centroids)

    total = float(similarity.astype(np.float64).sum())
    objective = train_info.get("objective") or []
    statistics = {
        "n_docs": n,
        "k": k,
        "dim": int(centroids.shape[1]),
        "mean_similarity": round(total / n, 6),
        "objective": round(total, 4),
        "train_points": int(train_points),
        "train_objective": round(objective[-1], 4) if objective else None,
        "init_points": train_info.get("init_points"),
        "train_mean_similarity": round(objective[-1] / train_points, 6) if objective else None,
        "iterations": len(objective),
        "empty_cluster_splits": train_info.get("splits", 0),
        "empty_clusters": int(len(empty)),
        "empty_cluster_ids": [int(c) for c in empty],
        "empty_clusters_policy": "kept with size 0 and null mean_similarity",
        "sizes": size_statistics(sizes),
        "threads": threads,
    }
    if level2 is not None:
        k2 = len(level2["centroids"])
        docs_per_parent = np.bincount(level2["parent"], weights=sizes, minlength=k2).astype(np.int64)
        statistics["level2"] = {
            "k": k2,
            "clusters_per_parent": size_statistics(np.bincount(level2["parent"], minlength=k2)),
            "docs_per_parent": size_statistics(docs_per_parent),
            "mean_centroid_similarity": round(float(level2["similarity"].astype(np.float64).mean()), 6),
        }
    manifest = build_manifest("cluster", settings, inputs, outputs_record(out, names), statistics)
    (out / TRAIN_STATE).unlink(missing_ok=True)
    finish_output_dir(out, manifest)
    return manifest


def format_summary(manifest: dict, out, seconds: float | None = None) -> str:
    """One line: documents, clusters, mean similarity, sizes, empty clusters."""
    s = manifest["statistics"]
    sz = s["sizes"]
    line = (
        f"cluster: {s['n_docs']} documents -> {s['k']} clusters, mean similarity {s['mean_similarity']:.4f}, "
        f"sizes {sz['min']}/{sz['median']:g}/{sz['max']} (min/median/max, Gini {sz['gini']:.2f}), "
        f"{s['empty_clusters']} empty"
    )
    if "level2" in s:
        line += f", level 2: {s['level2']['k']} groups"
    line += f" -> {out}"
    if seconds is not None:
        line += f" in {seconds:.1f}s"
    return line


