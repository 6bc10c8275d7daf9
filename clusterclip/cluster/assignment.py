"""Assign every document to its most similar centroid (exact maximum inner product), in bounded memory.

``source`` is anything with ``n`` (or ``len``), ``dim``, ``read(start, stop) -> float32 [m, dim]``
and, optionally, ``location(row) -> str`` for error messages (an
:class:`~clusterclip.embed.EmbeddingStore`, or a numpy array wrapped by :class:`ArraySource`),
as faiss's ``contrib/clustering.py`` ``DatasetAssign`` does. Rows are processed in fixed
:data:`BLOCK_ROWS` blocks aligned to absolute row numbers, and similarities are recomputed
exactly per row in float64, so the result never depends on ``chunk_rows`` or on threads.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import InputError, MismatchError
from ..progress import bar as progress_bar
from .kmeans import flat_ip_index

#: rows per assignment block (faiss's BLAS query block, ``distance_compute_blas_query_bs``)
BLOCK_ROWS = 4096
#: default rows read from the embeddings at once (a multiple of BLOCK_ROWS)
DEFAULT_CHUNK_ROWS = 65536
#: tolerance on the L2 norm of an embedding (they must be L2-normalised)
NORM_TOLERANCE = 1e-2


class ArraySource:
    """An in-memory ``[n, dim]`` array as an assignment source."""

    def __init__(self, x: np.ndarray):
        self.x = x
        self.n, self.dim = int(np.shape(x)[0]), int(np.shape(x)[1])

    def __len__(self) -> int:
        return self.n

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.ascontiguousarray(self.x[start:stop], dtype=np.float32)

    def location(self, row: int) -> str:
        return f"embeddings, row {row}"


def as_source(source):
    return source if hasattr(source, "read") else ArraySource(np.asarray(source))


def _location(source, row: int) -> str:
    return source.location(row) if hasattr(source, "location") else f"embeddings, row {row}"


def check_embeddings(x: np.ndarray, start: int = 0, source=None, rows: np.ndarray | None = None) -> None:
    """Raise a one-line :class:`InputError` naming the first NaN/inf, zero-norm or unnormalised row.

    Row ``i`` of ``x`` is document ``start + i``, or ``rows[i]`` when ``rows`` is given.
    """
    def row_of(i: int) -> int:
        return int(rows[i]) if rows is not None else start + i

    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        row = row_of(int(np.argmin(finite)))
        raise InputError(f"{_location(source, row)}: embedding holds NaN or infinite values; "
                         f"rerun `clusterclip embed ... --overwrite` (check the model and --dtype)")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    bad = np.abs(norms - 1.0) > NORM_TOLERANCE
    if bad.any():
        i = int(np.argmax(bad))
        row, norm = row_of(i), float(norms[i])
        what = ("embedding has zero norm (an empty or unembeddable document?)" if norm < 1e-6
                else f"embedding is not L2-normalised (norm {norm:.4g})")
        raise InputError(f"{_location(source, row)}: {what}; rerun `clusterclip embed ... --overwrite`")


def exact_similarity(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row dot product with the assigned centroid, in float64 then rounded to float32."""
    out: np.ndarray = np.empty(len(x), dtype=np.float32)
    step = 1024
    for s in range(0, len(x), step):
        out[s : s + step] = np.einsum("ij,ij->i", x[s : s + step], centroids[labels[s : s + step]], dtype=np.float64)
    return out


def assign(source, centroids: np.ndarray, chunk_rows: int = DEFAULT_CHUNK_ROWS, gpu: bool = False, *,
           gpu_device: int = 0, check: bool = True, progress: bool = False,
           on_rows: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` int32 ``[N]`` and ``similarity`` float32 ``[N]`` of every row of ``source``.

    ``chunk_rows`` is rounded up to a multiple of :data:`BLOCK_ROWS`; the result does not depend
    on it. With ``check`` every row is validated (finite, unit norm) and the first bad one named.
    ``progress``: a bar of its own; ``on_rows(n)``: called as each chunk of ``n`` rows is done.
    """
    source = as_source(source)
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    k, d = centroids.shape
    n = len(source)
    if source.dim != d:
        raise MismatchError(f"embeddings have dimension {source.dim} but the centroids {d}; use centroids of the same model")
    chunk_rows = max(BLOCK_ROWS, -(-int(chunk_rows) // BLOCK_ROWS) * BLOCK_ROWS)
    index = flat_ip_index(d, gpu, gpu_device)
    index.add(centroids)
    labels: np.ndarray = np.empty(n, dtype=np.int32)
    similarity: np.ndarray = np.empty(n, dtype=np.float32)
    with progress_bar(n, desc="assign", unit="doc", unit_scale=True, enabled=progress) as bar:
        for start in range(0, n, chunk_rows):
            stop = min(n, start + chunk_rows)
            x = source.read(start, stop)
            if check:
                check_embeddings(x, start, source)
            for b in range(0, stop - start, BLOCK_ROWS):
                xb = x[b : b + BLOCK_ROWS]
                _, idx = index.search(xb, 1)
                lab = idx[:, 0].astype(np.int32)
                if (lab < 0).any():  # faiss returns -1 only for NaN scores (check=False and bad data)
                    raise InputError(f"{_location(source, start + b + int(np.argmin(lab)))}: no centroid found "
                                     f"(NaN embedding?); rerun `clusterclip embed ... --overwrite`")
                labels[start + b : start + b + len(xb)] = lab
                similarity[start + b : start + b + len(xb)] = exact_similarity(xb, centroids, lab)
            bar.update(stop - start)
            if on_rows is not None:
                on_rows(stop - start)
    return labels, similarity


# --------------------------------------------------------------------------- the pass as engine tasks
#: rows one task run elsewhere reads and sends back at most (about 1.5 GiB of float32 at dim 384)
MAX_TASK_ROWS = 1 << 22


def row_ranges(n: int, tasks: int, block_rows: int = BLOCK_ROWS) -> list[tuple[int, int]]:
    """Row ranges ``[a, b)`` covering ``0..n`` for about ``tasks`` tasks, each starting at a multiple of
    ``block_rows`` (the blocks :func:`assign` searches), so the result never depends on the cut. One task
    takes every row; several take at most :data:`MAX_TASK_ROWS` each."""
    if tasks <= 1:
        return [(0, n)] if n else []
    per_task = -(-n // tasks)
    most = max(block_rows, MAX_TASK_ROWS // block_rows * block_rows)
    per_task = min(most, max(block_rows, -(-per_task // block_rows) * block_rows))
    return [(a, min(n, a + per_task)) for a in range(0, n, per_task)]


def assign_task(centroids: np.ndarray, rows, chunk_rows: int, gpu: bool, gpu_device: int, *,
                progress: Callable[[int], None] | None) -> tuple[np.ndarray, np.ndarray]:
    """An engine task: :func:`assign` over ``rows`` (an ``EmbeddingStore.rows`` slice), every row checked."""
    return assign(rows, centroids, chunk_rows=chunk_rows, gpu=gpu, gpu_device=gpu_device, check=True,
                  on_rows=progress)
