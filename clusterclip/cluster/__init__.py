"""The ``cluster`` step: spherical k-means over the document embeddings (ClusterClip §1.1).

1. draw a uniform random training sample (seeded) of at most ``max_train_points`` rows
   (default ``256 * k``, faiss's ``max_points_per_centroid``);
2. train spherical k-means on it (:mod:`.kmeans`: faiss, inner product, unit-norm centroids,
   one run, greedy k-means++ start by default), on a GPU when faiss-gpu sees one;
3. assign **every** document to its most similar centroid (:mod:`.assignment`), reading the
   memory-mapped embeddings in bounded chunks, so the corpus may be larger than RAM;
4. write the outputs (:mod:`.directory`) and, last, ``manifest.json``.

The step is :class:`.step.ClusterStep`, run by the one driver (:func:`clusterclip.steps.run_step`);
:func:`cluster_embeddings` is its library entry point.

Determinism: the same embeddings, settings and seed give byte-identical outputs on the same
machine with the same number of threads. faiss's multi-threaded BLAS can round differently
with another thread count or CPU; the thread count is recorded in ``statistics.threads``.
"""

from __future__ import annotations

import os
from typing import Callable

from ..artifacts import StepResult
from ..steps import run_step, settings_from
from .assignment import assign
from .directory import ClusterDir
from .settings import ClusterSettings
from .step import ClusterStep

__all__ = ["ClusterDir", "ClusterSettings", "ClusterStep", "assign", "cluster_embeddings"]


def cluster_embeddings(emb_dir, out_dir, settings: ClusterSettings | None = None, *, overwrite: bool = False,
                       progress: bool = True, log: Callable[[str], None] | None = None, **kwargs) -> StepResult:
    """Cluster the embeddings of the ``embed`` directory ``emb_dir`` into ``out_dir``.

    Settings come as a :class:`ClusterSettings` or as its fields in keyword arguments (``k=``
    is required). A finished run of the same job is "done"; an interrupted one resumes (training
    is skipped when its centroids were saved). ``levels=2`` adds a coarser level: the ``k``
    centroids clustered again into ``k2`` (default about ``sqrt(k)``) groups; ``clusters.parquet``
    then has a ``parent`` column. Documents keep their first-level cluster.
    """
    if isinstance(kwargs.get("assign_only"), os.PathLike):
        kwargs["assign_only"] = os.fspath(kwargs["assign_only"])
    s = settings_from(settings, kwargs, ClusterSettings)
    return run_step(ClusterStep.open(emb_dir, s, progress=progress, log=log), out_dir, overwrite=overwrite)
