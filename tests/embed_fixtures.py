"""Build ``clusterclip embed`` output directories from given vectors, without running a model.

Used by the clustering tests (and any test that needs an embed directory fast): the layout of
:mod:`clusterclip.embed.directory` — ``docs.parquet``, ``embeddings-00000.npy`` ... (concatenated
in name order) and a ``manifest.json`` with every file's size and sha256 — written directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from clusterclip.artifacts import build_manifest, file_record, save_npy_atomic, write_json_atomic, write_parquet_atomic


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def blobs(n: int, k: int, dim: int, *, noise: float = 0.05, seed: int = 0, sizes=None):
    """``n`` unit vectors around ``k`` random unit directions; returns ``(x float32 [n, dim], truth int [n])``.

    ``noise`` is the per-coordinate Gaussian noise times ``1/sqrt(dim)``. ``sizes`` optionally
    fixes the cluster sizes (summing to ``n``); by default the labels are uniform at random.
    """
    rng = np.random.default_rng(seed)
    centers = normalise(rng.standard_normal((k, dim)))
    if sizes is None:
        truth = rng.integers(0, k, size=n)
    else:
        assert sum(sizes) == n
        truth = rng.permutation(np.repeat(np.arange(k), sizes))
    x = centers[truth] + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    return normalise(x), truth


def write_embed_dir(path: str | Path, x: np.ndarray, *, parts: int = 1, dtype=np.float32,
                    manifest_n_docs: int | None = None, docs_rows: int | None = None, manifest: bool = True) -> Path:
    """Write ``x`` as an embed directory split into ``parts`` ``embeddings-*.npy`` files of ``dtype``.

    ``manifest_n_docs`` / ``docs_rows`` override the recorded document count / the number of
    ``docs.parquet`` rows (to build inconsistent directories); ``manifest=False`` leaves the
    manifest out (an interrupted embed run).
    """
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    x = np.asarray(x)
    n, dim = x.shape
    names, part_rows = [], []
    for i, chunk in enumerate(np.array_split(np.arange(n), parts)):
        name = f"embeddings-{i:05d}.npy"
        save_npy_atomic(d / name, np.ascontiguousarray(x[chunk].astype(dtype)))
        names.append(name)
        part_rows.append(len(chunk))
    rows = n if docs_rows is None else docs_rows
    write_parquet_atomic(d / "docs.parquet", pa.table({
        "doc_id": pa.array(np.arange(rows, dtype=np.int64)),
        "source": pa.array(["synthetic.jsonl"] * rows, type=pa.string()),
        "row": pa.array(np.arange(rows, dtype=np.int64)),
        "n_chars": pa.array(np.full(rows, 100, dtype=np.int64)),
    }))
    names.append("docs.parquet")
    if manifest:
        settings = {"text_column": "text", "id_column": None, "model": "synthetic", "max_length": 0,
                    "dtype": np.dtype(dtype).name}
        n_docs = n if manifest_n_docs is None else manifest_n_docs
        stats = {"n_docs": n_docs, "dim": dim, "skipped_empty": 0, "tokens": 0, "part_rows": part_rows}
        accounting = {"input_rows": n, "documents": n, "skipped": {"empty": 0}, "other_partitions": 0,
                      "complete": True, "limit": None}
        write_json_atomic(d / "manifest.json", build_manifest("embed", settings, {"files": []},
                                                              [file_record(d, name) for name in names], stats,
                                                              accounting=accounting))
    return d
