"""The ``cluster`` step as a :class:`~clusterclip.steps.Step`: EMB -> CL (see :mod:`clusterclip.cluster`).

:meth:`ClusterStep.plan` checks everything that can be refused before ``--out`` is touched (``--k``
against the documents, the training sample against the memory, ``--assign-only``'s centroids and
lineage); :meth:`ClusterStep.run` trains (or reuses the centroids an interrupted run saved), assigns
every document through the engine, and writes the outputs; the driver commits them.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

from ..artifacts.manifest import verify_task
from ..embed.directory import DOCS_FILE, EmbedDir
from ..errors import ClusterClipError, InputError, IntegrityError, MismatchError
from ..faults import checkpoint
from ..progress import bar as progress_bar
from ..steps import Outcome, Plan, Run, Step
from .assignment import BLOCK_ROWS, assign, assign_task, check_embeddings, row_ranges
from .directory import (
    CENTROIDS,
    CENTROIDS_L2,
    ClusterDir,
    ClusterStats,
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

ALGORITHM = "spherical k-means (faiss), inner product, 1 run"
#: embed settings that define the vector space (centroids of one apply to the vectors of another only if equal)
_SPACE_KEYS = ("backend", "model", "max_length", "long_docs", "prompt_name", "text_column")


class ClusterStep(Step[ClusterSettings]):
    """Spherical k-means over the embeddings of ``emb`` (or, with ``--assign-only CL_OLD``, CL_OLD's centroids)."""

    name = "cluster"
    settings_class = ClusterSettings
    stats_class = ClusterStats

    def __init__(self, emb: EmbedDir, settings: ClusterSettings, *, old: ClusterDir | None = None, **kwargs):
        if old is None and settings.assign_only is not None:
            old = ClusterDir(settings.assign_only)
        if old is not None and settings.k is None:
            settings = settings.replace(k=old.k)  # the centroids' own k
        super().__init__(settings, **kwargs)
        self.emb = emb
        self.old = old
        self.train_points = 0
        self.resolved = settings  #: the settings with device, training size and k2 resolved (plan)
        self.fixed: dict | None = None  #: --assign-only: the centroids used as they are

    @classmethod
    def open(cls, emb_dir, settings: ClusterSettings, **kwargs) -> ClusterStep:
        """The step over the embed directory at ``emb_dir`` (``--assign-only``'s directory opened first)."""
        old = ClusterDir(settings.assign_only) if settings.assign_only is not None else None
        return cls(EmbedDir(emb_dir), settings, old=old, **kwargs)

    def upstream(self) -> dict:
        return {"embed": self.emb} if self.old is None else {"embed": self.emb, "centroids": self.old}

    # ------------------------------------------------------------------ plan
    def plan(self, out: Path, overwrite: bool) -> Plan:
        s, emb = self.settings, self.emb
        emb.verify_file(DOCS_FILE)  # recorded as an input of the clusters: checked like the embeddings
        if self.old is not None:
            return self._plan_assign_only()
        if not overwrite:
            _refuse_clusters_of_before(out, emb)
        n = emb.n_docs
        assert s.k is not None  # ClusterSettings.validate
        if s.k > n:
            raise InputError(f"--k {s.k}: larger than the number of documents (N={n}) in {emb.path}; lower --k")
        k2 = (s.k2 if s.k2 is not None else default_k2(s.k)) if s.levels == 2 else None
        max_train_points = s.max_train_points if s.max_train_points is not None else POINTS_PER_CENTROID * s.k
        self.train_points = min(max_train_points, n)
        _check_training_memory(self.train_points, emb.dim)
        self.resolved = s.replace(device=faiss_device(s.device), max_train_points=max_train_points, k2=k2)
        return Plan({**self.resolved.record(), "algorithm": ALGORITHM}, self.upstream_records())

    def _plan_assign_only(self) -> Plan:
        """``--assign-only CL_OLD``: every document assigned to CL_OLD's centroids (checked), no training."""
        s, emb, old = self.settings, self.emb, self.old
        assert old is not None
        if s.k != old.k:
            raise MismatchError(f"--k {s.k}: {old.path} holds {old.k} centroids; leave --k out with --assign-only")
        lineage = _lineage(old, emb)
        centroids = old.centroids()  # sha256 checked
        _check_centroids(centroids, old.path / CENTROIDS, emb.dim)
        level2 = _level2_of(old, emb.dim)
        if s.k > emb.n_docs:
            self.log(f"cluster: note: {emb.n_docs} documents for {s.k} centroids; some clusters stay empty")
        self.resolved = s.replace(device=faiss_device(s.device))
        self.fixed = {"centroids": centroids, "level2": level2,
                      "source": {"from": str(old.path.resolve()), "k": old.k, "n_docs_before": old.n_docs,
                                 "lineage": lineage}}
        return Plan({**old.settings, "assign_only": True}, self.upstream_records())

    # ------------------------------------------------------------------ run
    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        """``--threads``: faiss's thread count while training and assigning (restored after)."""
        threads = self.settings.threads if self.old is None else None
        if threads is None:
            yield
            return
        import faiss

        previous = default_threads()
        faiss.omp_set_num_threads(threads)
        try:
            yield
        finally:
            faiss.omp_set_num_threads(previous)

    def run(self, run: Run) -> Outcome:
        s, emb = self.resolved, self.emb
        gpu, gpu_device = s.device == "cuda", gpu_index(self.settings.device)
        if self.old is not None and self.fixed is not None:
            self.log(f"cluster: --assign-only: assigning {emb.n_docs:,} documents to the {self.old.k} centroids of "
                     f"{self.old.path} ({self.fixed['source']['lineage']})")
        self._verify_parts()  # every embedding read is checked against what embed recorded
        store = emb.store()
        n = store.n
        threads = 1 if gpu else default_threads()
        centroids, train_info = self._centroids(run, store, gpu, gpu_device, threads)
        labels, similarity = self._assign(store, centroids, gpu, gpu_device)
        if len(labels) != n:  # accounting: every document gets a cluster
            raise InputError(f"{emb.path}: assigned {len(labels)} of {n} documents; this is a bug: please report it")
        level2 = self._level2(centroids)
        checkpoint("cluster.assigned")
        names = write_outputs(run.build, centroids, labels, similarity, level2)
        statistics = _statistics(centroids, labels, similarity, train_info, self.train_points, threads, level2)
        if self.fixed is not None:
            statistics = replace(statistics, assign_only={**self.fixed["source"], "fit": self._fit(similarity)})
        accounting = {"documents": n, "assigned": int(len(labels)), "cluster_sizes_sum": int(np.bincount(labels).sum())}
        return Outcome(names, statistics, accounting=accounting, processed=n)

    def _verify_parts(self) -> None:
        """The sha256 of every embedding part against the embed manifest, in groups of parts (engine tasks)."""
        emb, s = self.emb, self.resolved
        parts = list(emb.parts)
        n_tasks = max(1, min(len(parts), self.engine.slots(s)))
        groups = [(str(emb.path), parts[i::n_tasks]) for i in range(n_tasks)]
        for _ in self.engine.map(s, verify_task, [g for g in groups if g[1]], shared=(emb.manifest,)):
            pass

    def _assign(self, store, centroids: np.ndarray, gpu: bool, gpu_device: int) -> tuple[np.ndarray, np.ndarray]:
        """Every document's cluster and similarity: row ranges on the kernel's blocks (engine tasks), in row order."""
        s, n = self.resolved, store.n
        ranges = row_ranges(n, self.engine.slots(s), BLOCK_ROWS)
        labels = np.empty(n, dtype=np.int32)
        similarity = np.empty(n, dtype=np.float32)
        filled = 0
        args = ((store.rows(a, b), s.chunk_rows, gpu, gpu_device) for a, b in ranges)
        resources = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
        with progress_bar(n, desc="assign", unit="doc", unit_scale=True, enabled=self.progress) as bar:
            for i, (lab, sim) in self.engine.map(s, assign_task, args, shared=(centroids,),
                                                 sizes=[b - a for a, b in ranges], bar=bar, resources=resources):
                a, b = ranges[i]
                if len(lab) != b - a:
                    raise RuntimeError(f"internal error: the task of rows {a}..{b} returned {len(lab)} labels")
                labels[a:b], similarity[a:b] = lab, sim
                filled += b - a
        if filled != n:
            raise RuntimeError(f"internal error: {filled} of {n} documents assigned")
        return labels, similarity

    def _fit(self, similarity: np.ndarray) -> dict:
        """``--assign-only``: how well the new documents fit the old centroids (:mod:`.fit`); a warning when not."""
        from .fit import assignment_fit

        assert self.old is not None
        record, warning = assignment_fit(self.emb, self.old, similarity)
        if warning:
            self.log(f"cluster: warning: {warning}")
        return record

    def _centroids(self, run: Run, store, gpu: bool, gpu_device: int, threads: int) -> tuple[np.ndarray, dict]:
        """CL_OLD's (``--assign-only``), those an interrupted run saved, or newly trained ones (then saved)."""
        if self.fixed is not None:
            return self.fixed["centroids"], {"objective": [], "splits": 0, "init_points": None}
        trained = load_train_state(run.build) if run.resume else None
        if trained is not None:
            self.log(f"cluster: resuming with the centroids trained by the interrupted run ({run.build / CENTROIDS})")
            return trained.pop("centroids"), trained
        s, n, k, m = self.resolved, store.n, self.resolved.k, self.train_points
        assert k is not None  # --k is required unless --assign-only (ClusterSettings.validate)
        t0 = time.perf_counter()
        rows, x = _training_sample(store, m, s.seed)
        check_embeddings(x, source=store, rows=rows)  # fail fast, before training
        del rows
        if m < MIN_POINTS_PER_CENTROID * k:
            self.log(f"cluster: note: only {m / k:.1f} training points per cluster "
                     f"(faiss recommends >= {MIN_POINTS_PER_CENTROID}); consider a smaller --k")
        self.log(f"cluster: training spherical k-means, k={k}, {s.iters} iterations on {m} of {n} documents "
                 f"(dim {store.dim}, {s.init} init, {f'cuda:{gpu_device}' if gpu else f'cpu, {threads} threads'}) ...")
        centroids, train_info = train_spherical_kmeans_with_stats(x, k, iters=s.iters, seed=s.seed, gpu=gpu,
                                                                  gpu_device=gpu_device, init=s.init)
        del x
        save_train_state(run.build, centroids, train_info)
        checkpoint("cluster.trained")
        obj = train_info["objective"][-1] if train_info["objective"] else float("nan")
        self.log(f"cluster: trained in {time.perf_counter() - t0:.1f}s ({len(train_info['objective'])} iterations), "
                 f"mean training similarity {obj / m:.4f}")
        return centroids, train_info

    def _level2(self, centroids: np.ndarray) -> dict | None:
        """``--levels 2``: the centroids clustered again (small, k x D: always on the CPU, deterministic)."""
        if self.fixed is not None:
            return self.fixed["level2"]
        s = self.resolved
        if s.levels != 2:
            return None
        assert s.k2 is not None  # resolved by plan() for --levels 2
        c2, info2 = train_spherical_kmeans_with_stats(centroids, s.k2, iters=s.iters, seed=s.seed, init=s.init)
        parent, parent_sim = assign(centroids, c2, check=False)
        return {"centroids": c2, "parent": parent, "similarity": parent_sim, "info": info2}

    # ------------------------------------------------------------------ summary
    def summary(self, result) -> str:
        """One line: documents, clusters, mean similarity, sizes, empty clusters."""
        s = result.statistics
        sz = s["sizes"]
        line = (f"cluster: {s['n_docs']:,} documents -> {s['k']} clusters, mean similarity "
                f"{s['mean_similarity']:.4f}, sizes {sz['min']}/{sz['median']:g}/{sz['max']} (min/median/max, Gini "
                f"{sz['gini']:.2f}), {s['empty_clusters']} empty")
        if "level2" in s:
            line += f", level 2: {s['level2']['k']} groups"
        if "assign_only" in s:
            line += f", centroids of {s['assign_only']['from']} (not trained)"
            fit = s["assign_only"].get("fit") or {}
            if not fit.get("fits", True):
                line += (f", {fit['below_reference']:,} {'new ' if fit['new_documents'] != 'unknown' else ''}"
                         f"documents fit no old cluster (see the warning)")
        return line + f" -> {result.out} in {result.seconds:.1f}s"


STEP = ClusterStep


def _level2_of(old: ClusterDir, dim: int) -> dict | None:
    """CL_OLD's second level (``--levels 2``), its files checked, or None."""
    if old.settings.get("levels", 1) != 2:
        return None
    c2 = old.level2_centroids()  # sha256 checked
    table = old.clusters_table()  # sha256 checked
    _check_centroids(c2, old.path / CENTROIDS_L2, dim)
    parent = table.column("parent").to_numpy().astype(np.int32)
    if len(parent) != old.k or parent.min() < 0 or parent.max() >= len(c2):
        raise IntegrityError(f"{old.path / 'clusters.parquet'}: the parent column does not match "
                             f"{CENTROIDS_L2}; rerun `clusterclip cluster` there")
    return {"centroids": c2, "parent": parent, "similarity": table.column("parent_similarity").to_numpy(), "info": {}}


def _refuse_clusters_of_before(out: Path, emb: EmbedDir) -> None:
    """``cluster EMB --out CL`` again after ``embed --incremental`` grew EMB: say what to run instead of the
    generic "other inputs" refusal (CL stays as it is)."""
    try:
        before = ClusterDir(out)
    except ClusterClipError:
        return  # not a finished cluster output: the output transaction says what it is
    recorded = before.embed_record
    if Path(str(recorded.get("path"))).resolve() == emb.path.resolve() and emb.grew_from(recorded.get("manifest_sha256")):
        raise MismatchError(f"{out}: holds the clusters of the {before.n_docs:,} documents {emb.path} held before "
                            f"`embed --incremental` ({emb.n_docs:,} now); keep them and put the new documents in them "
                            f"with `clusterclip cluster {emb.path} --assign-only {out} --out NEW_CL`, or cluster "
                            f"everything anew with --overwrite (or another --out)")


def _lineage(old: ClusterDir, emb: EmbedDir) -> str:
    """How CL_OLD's embed directory relates to ``emb``; refuse when the vectors may be of another space."""
    recorded = old.embed_record
    digest = recorded.get("manifest_sha256")
    if digest == emb.record()["manifest_sha256"]:
        return "the same embed output"
    if digest in emb.lineage:
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


def _statistics(centroids, labels, similarity, train_info, train_points, threads, level2) -> ClusterStats:
    k, n = len(centroids), len(labels)
    sizes = np.bincount(labels, minlength=k).astype(np.int64)
    empty = np.nonzero(sizes == 0)[0]
    total = float(similarity.astype(np.float64).sum())
    objective = train_info.get("objective") or []
    return ClusterStats(
        n_docs=n,
        k=k,
        dim=int(centroids.shape[1]),
        mean_similarity=round(total / n, 6),
        objective=round(total, 4),
        train_points=int(train_points),
        train_objective=round(objective[-1], 4) if objective else None,
        init_points=train_info.get("init_points"),
        train_mean_similarity=round(objective[-1] / train_points, 6) if objective else None,
        iterations=len(objective),
        empty_cluster_splits=train_info.get("splits", 0),
        empty_clusters=int(len(empty)),
        empty_cluster_ids=[int(c) for c in empty],
        empty_clusters_policy="kept with size 0 and null mean_similarity",
        sizes=size_statistics(sizes),
        threads=threads,
        level2=None if level2 is None else _level2_statistics(level2, sizes),
    )


def _level2_statistics(level2: dict, sizes: np.ndarray) -> dict:
    k2 = len(level2["centroids"])
    docs_per_parent = np.bincount(level2["parent"], weights=sizes, minlength=k2).astype(np.int64)
    return {
        "k": k2,
        "clusters_per_parent": size_statistics(np.bincount(level2["parent"], minlength=k2)),
        "docs_per_parent": size_statistics(docs_per_parent),
        "mean_centroid_similarity": round(float(level2["similarity"].astype(np.float64).mean()), 6),
    }


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
