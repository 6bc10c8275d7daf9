"""``cluster`` on Ray: the checks of the embedding parts and the assignment pass as Ray tasks.

Training stays on one machine (faiss on a sample, :mod:`clusterclip.cluster.kmeans`); what
grows with the corpus is reading every embedding, so that is what moves to the cluster:

1. :func:`verify_parts`: groups of parts, each task re-hashing its files against the ``embed``
   manifest (the same check as ``EmbedDir.verify``), before training reads any of them;
2. :func:`assign_rows`: row ranges of the embeddings (``EmbeddingStore.rows``), each task running
   the step's kernel (:func:`clusterclip.cluster.assignment.assign`, passed in) on its rows. Ranges
   start at multiples of the kernel's ``block_rows``, the blocks the local pass uses, so every
   label and similarity is the one the local engine computes (the outputs are byte-identical).

The driver collects the labels in row order, checks that every document got one, and writes
the outputs and the manifest as the local engine does. Workers read the embedding files by
path: on a multi-node cluster the ``embed`` directory must be on a shared file system.
"""

from __future__ import annotations

import numpy as np

from ..progress import bar as progress_bar
from .ray_session import cluster_cpus, connect, run_tasks, task_environment

#: rows one assignment task reads at most (about 1.5 GiB of float32 at dim 384; rounded to the kernel's blocks)
MAX_TASK_ROWS = 1 << 22
#: tasks per CPU of the cluster, for balance
TASKS_PER_CPU = 4


def verify_parts(emb, settings) -> None:
    """Re-hash every embedding part against ``emb``'s manifest, in parallel tasks (IntegrityError on a bad one)."""
    ray = connect(settings.ray_address)
    parts = list(emb.parts)
    n_tasks = max(1, min(len(parts), TASKS_PER_CPU * cluster_cpus()))
    groups = [parts[i::n_tasks] for i in range(n_tasks)]
    manifest = ray.put(emb.manifest)
    remote = ray.remote(_verify_group)
    for _ in run_tasks(remote, [(str(emb.path), manifest, g) for g in groups if g], resources={"num_cpus": 1}):
        pass


def _verify_group(path: str, manifest: dict, names: list[str]) -> int:
    from ..artifacts import require_outputs

    task_environment()
    require_outputs(path, manifest, full=True, only=set(names))
    return len(names)


def task_ranges(n: int, cpus: int, block_rows: int) -> list[tuple[int, int]]:
    """Row ranges ``[a, b)`` covering ``0..n``, each starting at a multiple of ``block_rows``."""
    per_task = -(-n // max(1, TASKS_PER_CPU * cpus))
    most = max(block_rows, MAX_TASK_ROWS // block_rows * block_rows)
    per_task = min(most, max(block_rows, -(-per_task // block_rows) * block_rows))
    return [(a, min(n, a + per_task)) for a in range(0, n, per_task)]


def assign_rows(store, centroids: np.ndarray, settings, *, kernel, block_rows: int, gpu: bool,
                progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` int32 ``[N]`` and ``similarity`` float32 ``[N]`` of every row of ``store``, ``kernel`` run in Ray tasks."""
    ray = connect(settings.ray_address)
    n = store.n
    centroids_ref = ray.put(np.ascontiguousarray(centroids, dtype=np.float32))
    ranges = task_ranges(n, cluster_cpus(), block_rows)
    args = [(kernel, store.rows(a, b), centroids_ref, settings.chunk_rows, gpu) for a, b in ranges]
    labels = np.empty(n, dtype=np.int32)
    similarity = np.empty(n, dtype=np.float32)
    filled = 0
    remote = ray.remote(_assign_task)
    resources = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
    with progress_bar(n, desc="assign (ray)", unit="doc", unit_scale=True, enabled=progress) as bar:
        for i, (lab, sim) in run_tasks(remote, args, resources=resources):
            a, b = ranges[i]
            if len(lab) != b - a:
                raise RuntimeError(f"internal error: the task of rows {a}..{b} returned {len(lab)} labels")
            labels[a:b], similarity[a:b] = lab, sim
            filled += b - a
            bar.update(b - a)
    if filled != n:
        raise RuntimeError(f"internal error: {filled} of {n} documents assigned")
    return labels, similarity


def _assign_task(kernel, rows, centroids, chunk_rows, gpu):
    task_environment()
    return kernel(rows, centroids, chunk_rows=chunk_rows, gpu=gpu, check=True)
