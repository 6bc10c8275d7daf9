"""The ``cluster`` step: spherical k-means over the document embeddings (ClusterClip §1.1).

1. draw a uniform random training sample (seeded) of at most ``max_train_points`` rows
   (default ``256 * k``, faiss's ``max_points_per_centroid``);
2. train spherical k-means on it (:mod:`.kmeans`: faiss, inner product, unit-norm centroids,
   one run, greedy k-means++ start by default), on a GPU when faiss-gpu sees one;
3. assign **every** document to its most similar centroid (:mod:`.assignment`), reading the
   memory-mapped embeddings in bounded chunks, so the corpus may be larger than RAM;
4. write the outputs (:mod:`.directory`) and, last, ``manifest.json``.

Determinism: the same embeddings, settings and seed give byte-identical outputs on the same
machine with the same number of threads. faiss's multi-threaded BLAS can round differently
with another thread count or CPU; the thread count is recorded in ``statistics.threads``.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..artifacts import Job, OutputDir, StepResult, build_manifest
from ..embed.directory import DOCS_FILE, EmbedDir
from ..engines import engine
from ..errors import ClusterClipError, InputError, IntegrityError, MismatchError
from ..faults import checkpoint
from .assignment import BLOCK_ROWS, assign, check_embeddings
from .directory import (
    CENTROIDS,
    CENTROIDS_L2,
    ClusterDir,
    load_train_state,
    save_train_state,
    size_statistics,
    write_outputs,
)
from .kmeans import (
    MIN_POINTS_PER_CENTROID,
    POINTS_PER_CENTROID,
    default_k2,
    default_threads,
    faiss_device,
    gpu_index,
    train_spherical_kmeans_with_stats,
)
from .settings import ClusterSettings

__all__ = ["ClusterDir", "ClusterSettings", "assign", "cluster_embeddings"]


def cluster_embeddings(emb_dir, out_dir, settings: ClusterSettings | None = None, *, overwrite: bool = False,
                       progress: bool = True, log: Callable[[str], None] | None = None, **kwargs) -> StepResult:
    """Cluster the embeddings of the ``embed`` directory ``emb_dir`` into ``out_dir``.

    Settings come as a :class:`ClusterSettings` or as its fields in keyword arguments (``k=``
    is required). A finished run of the same job is "done"; an interrupted one resumes (training
    is skipped when its centroids were saved). ``levels=2`` adds a coarser level: the ``k``
    centroids clustered again into ``k2`` (default about ``sqrt(k)``) groups; ``clusters.parquet``
    then has a ``parent`` column. Documents keep their first-level cluster.
    """
    from ..embed import settings_from

    t0 = time.perf_counter()
    if isinstance(kwargs.get("assign_only"), os.PathLike):
        kwargs["assign_only"] = os.fspath(kwargs["assign_only"])
    s = settings_from(settings, kwargs, ClusterSettings)
    if s.assign_only is not None and s.k is None:
        s = s.replace(k=ClusterDir(s.assign_only).k)  # the centroids' own k
    say = log or (lambda message: None)
    emb = EmbedDir(emb_dir)
    emb.verify_file(DOCS_FILE)  # recorded as an input of the clusters: checked like the embeddings
    if s.assign_only is not None:
        return _assign_only(emb, out_dir, s, overwrite=overwrite, progress=progress, say=say, t0=t0)
    n = emb.n_docs
    if s.k > n:
        raise InputError(f"--k {s.k}: larger than the number of documents (N={n}) in {emb.path}; lower --k")
    k2 = (s.k2 if s.k2 is not None else default_k2(s.k)) if s.levels == 2 else None
    max_train_points = s.max_train_points if s.max_train_points is not None else POINTS_PER_CENTROID * s.k
    train_points = min(max_train_points, n)
    _check_training_memory(train_points, emb.dim)
    device = faiss_device(s.device)
    resolved = s.replace(device=device, max_train_points=max_train_points, k2=k2)
    record = {**resolved.record(), "algorithm": "spherical k-means (faiss), inner product, 1 run"}
    job = Job("cluster", record, {"embed": emb.record()})
    engine(s.engine).preflight(s)  # e.g. Ray is there and --ray-address answers, before --out is touched
    with OutputDir(out_dir, job, overwrite=overwrite, inputs=(emb.path,), log=say) as run:
        if run.state == "done":
            return StepResult(run.manifest, Path(out_dir), "done", time.perf_counter() - t0)
        import faiss

        previous_threads = default_threads()
        if s.threads is not None:
            faiss.omp_set_num_threads(s.threads)
        try:
            manifest = _run(run, emb, resolved, record, train_points, device == "cuda", progress, say,
                            gpu_device=gpu_index(s.device))
        finally:
            if s.threads is not None:
                faiss.omp_set_num_threads(previous_threads)
    return StepResult(manifest, Path(out_dir), run.state, time.perf_counter() - t0, n)


def _assign_only(emb: EmbedDir, out_dir, s: ClusterSettings, *, overwrite: bool, progress: bool, say,
                 t0: float) -> StepResult:
    """``--assign-only CL_OLD``: every document of ``emb`` assigned to CL_OLD's centroids (checked), no training."""
    old = ClusterDir(s.assign_only)
    if s.k != old.k:
        raise MismatchError(f"--k {s.k}: {old.path} holds {old.k} centroids; leave --k out with --assign-only")
    lineage = _lineage(old, emb)
    centroids = old.centroids()  # sha256 checked
    _check_centroids(centroids, old.path / CENTROIDS, emb.dim)
    level2 = None
    if old.settings.get("levels", 1) == 2:
        old.verify_file(CENTROIDS_L2)
        table = old.clusters_table()  # sha256 checked
        c2 = np.load(old.path / CENTROIDS_L2, allow_pickle=False)
        _check_centroids(c2, old.path / CENTROIDS_L2, emb.dim)
        parent = table.column("parent").to_numpy().astype(np.int32)
        if len(parent) != old.k or parent.min() < 0 or parent.max() >= len(c2):
            raise IntegrityError(f"{old.path / 'clusters.parquet'}: the parent column does not match "
                                 f"{CENTROIDS_L2}; rerun `clusterclip cluster` there")
        level2 = {"centroids": c2, "parent": parent, "similarity": table.column("parent_similarity").to_numpy(),
                  "info": {}}
    if s.k > emb.n_docs:
        say(f"cluster: note: {emb.n_docs} documents for {s.k} centroids; some clusters stay empty")
    device = faiss_device(s.device)
    record = {**old.settings, "assign_only": True}
    inputs = {"embed": emb.record(), "centroids": old.record()}
    job = Job("cluster", record, inputs)
    engine(s.engine).preflight(s)  # e.g. Ray is there and --ray-address answers, before --out is touched
    with OutputDir(out_dir, job, overwrite=overwrite, inputs=(emb.path, old.path), log=say) as run:
        if run.state == "done":
            return StepResult(run.manifest, Path(out_dir), "done", time.perf_counter() - t0)
        say(f"cluster: --assign-only: assigning {emb.n_docs:,} documents to the {old.k} centroids of {old.path} "
            f"({lineage})")
        fixed = {"centroids": centroids, "level2": level2, "inputs": inputs,
                 "source": {"from": str(old.path.resolve()), "k": old.k, "n_docs_before": old.n_docs,
                            "lineage": lineage}}
        manifest = _run(run, emb, s.replace(device=device), record, 0, device == "cuda", progress, say, fixed=fixed,
                        gpu_device=gpu_index(s.device))
    return StepResult(manifest, Path(out_dir), run.state, time.perf_counter() - t0, emb.n_docs)


#: embed settings that define the vector space (centroids of one apply to the vectors of another only if equal)
_SPACE_KEYS = ("backend", "model", "max_length", "long_docs", "prompt_name", "text_column")


def _lineage(old: ClusterDir, emb: EmbedDir) -> str:
    """How CL_OLD's embed directory relates to ``emb``; refuse when the vectors may be of another space."""
    recorded = old.embed_record
    digest = recorded.get("manifest_sha256")
    if digest == emb.record()["manifest_sha256"]:
        return "the same embed output"
    if digest in ((emb.manifest.get("incremental") or {}).get("lineage") or []):
        return "an embed output this one was built from incrementally"
    path = Path(recorded.get("path", ""))
    try:
        before = EmbedDir(path)
        same = before.record()["manifest_sha256"] == digest
    except ClusterClipError:
        same = False
    if same:
        differ = [k for k in _SPACE_KEYS if before.settings.get(k) != emb.settings.get(k)]
        if not differ:
            return f"an embed output of the same model settings ({path})"
        raise MismatchError(f"--assign-only {old.path}: its centroids come from {path}, embedded with other "
                            f"settings ({', '.join(f'{k} {before.settings.get(k)!r} vs {emb.settings.get(k)!r}' for k in differ)}); "
                            f"cluster {emb.path} without --assign-only")
    raise MismatchError(f"--assign-only {old.path}: its centroids come from {recorded.get('path')}, which is not "
                        f"{emb.path}, not an output {emb.path} was built from with --incremental, and is gone or "
                        f"changed, so the model cannot be checked; cluster {emb.path} without --assign-only")


def _check_centroids(c: np.ndarray, path: Path, dim: int) -> None:
    if c.ndim != 2 or c.shape[1] != dim:
        raise MismatchError(f"{path}: centroids of dimension {c.shape[-1]} but the embeddings have {dim}; use "
                            f"centroids of the same model")
    norms = np.linalg.norm(c.astype(np.float64), axis=1)
    if not np.isfinite(c).all() or np.any(np.abs(norms - 1.0) > 1e-3):
        raise IntegrityError(f"{path}: centroids are not finite unit vectors; rerun `clusterclip cluster` there")


def _run(run: OutputDir, emb: EmbedDir, s: ClusterSettings, record: dict, train_points: int, gpu: bool,
         progress: bool, say, fixed: dict | None = None, gpu_device: int = 0) -> dict:
    runner = engine(s.engine)
    runner.verify_parts(emb, s)  # every embedding read is checked against what embed recorded
    store = emb.store()
    n, k = store.n, s.k
    threads = 1 if gpu else default_threads()
    build = run.build
    trained = load_train_state(build) if run.state == "resume" and fixed is None else None
    if fixed is not None:
        centroids, train_info = fixed["centroids"], {"objective": [], "splits": 0, "init_points": None}
    elif trained is not None:
        centroids = trained.pop("centroids")
        train_info = trained
        say(f"cluster: resuming with the centroids trained by the interrupted run ({build / CENTROIDS})")
    else:
        t0 = time.perf_counter()
        rows, x = _training_sample(store, train_points, s.seed)
        check_embeddings(x, source=store, rows=rows)  # fail fast, before training
        del rows
        if train_points < MIN_POINTS_PER_CENTROID * k:
            say(f"cluster: note: only {train_points / k:.1f} training points per cluster "
                f"(faiss recommends >= {MIN_POINTS_PER_CENTROID}); consider a smaller --k")
        say(f"cluster: training spherical k-means, k={k}, {s.iters} iterations on {train_points} of {n} documents "
            f"(dim {store.dim}, {s.init} init, {f'cuda:{gpu_device}' if gpu else f'cpu, {threads} threads'}) ...")
        centroids, train_info = train_spherical_kmeans_with_stats(x, k, iters=s.iters, seed=s.seed, gpu=gpu,
                                                                  gpu_device=gpu_device, init=s.init)
        del x
        save_train_state(build, centroids, train_info)
        checkpoint("cluster.trained")
        obj = train_info["objective"][-1] if train_info["objective"] else float("nan")
        say(f"cluster: trained in {time.perf_counter() - t0:.1f}s ({len(train_info['objective'])} iterations), "
            f"mean training similarity {obj / train_points:.4f}")

    kernel = functools.partial(assign, gpu_device=gpu_device) if gpu_device else assign  # --device cuda:N
    labels, similarity = runner.assign(store, centroids, s, kernel=kernel, block_rows=BLOCK_ROWS, gpu=gpu,
                                       progress=progress)
    if len(labels) != n:  # accounting: every document gets a cluster
        raise InputError(f"{emb.path}: assigned {len(labels)} of {n} documents; this is a bug: please report it")
    level2 = None
    if fixed is not None:
        level2 = fixed["level2"]
    elif s.levels == 2:  # small (k x D): always on the CPU, deterministic
        c2, info2 = train_spherical_kmeans_with_stats(centroids, s.k2, iters=s.iters, seed=s.seed, init=s.init)
        parent, parent_sim = assign(centroids, c2, check=False)
        level2 = {"centroids": c2, "parent": parent, "similarity": parent_sim, "info": info2}
    checkpoint("cluster.assigned")
    names = write_outputs(build, centroids, labels, similarity, level2)
    statistics = _statistics(centroids, labels, similarity, train_info, train_points, threads, level2)
    accounting = {"documents": n, "assigned": int(len(labels)), "cluster_sizes_sum": int(np.bincount(labels).sum())}
    inputs = {"embed": emb.record()}
    if fixed is not None:
        statistics["assign_only"] = fixed["source"]
        inputs = fixed["inputs"]
    manifest = build_manifest("cluster", record, inputs, run.records(names), statistics, accounting=accounting)
    run.commit(manifest)
    return manifest


def _statistics(centroids, labels, similarity, train_info, train_points, threads, level2) -> dict:
    k, n = len(centroids), len(labels)
    sizes = np.bincount(labels, minlength=k).astype(np.int64)
    empty = np.nonzero(sizes == 0)[0]
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
    return statistics


def _training_sample(store, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``m`` rows drawn uniformly without replacement (seeded), in row order; all rows when ``m >= N``."""
    n = store.n
    if m >= n:
        return np.arange(n, dtype=np.int64), store.read(0, n)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64)
    return rows, store.take(rows)


def _check_training_memory(m: int, dim: int) -> None:
    """Refuse a training sample that cannot fit in this machine's memory, with the fix."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    need = m * dim * 4
    if need > 0.6 * ram:
        fits = int(0.5 * ram // (dim * 4))
        raise InputError(f"training on {m} documents of dimension {dim} needs about {need / 2**30:.1f} GiB of memory "
                         f"but this machine has {ram / 2**30:.1f} GiB; pass --max-train-points {fits} or lower "
                         f"(or a smaller --k)")
