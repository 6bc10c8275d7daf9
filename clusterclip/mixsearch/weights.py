"""The owner of a proposal's files: ``weights.csv`` (what ``schedule --weights`` reads) and its sidecar.

``NAME.csv`` has the columns ``cluster`` and ``weight``, one row per cluster (every cluster listed:
``schedule`` gives an unlisted cluster weight 1; 0 leaves a cluster out), weights written in full
precision. ``NAME.manifest.json`` beside it says where they come from: the runs and the fit, the
constraints, the predicted losses, the file's sha256 and the ``schedule`` flags that realise them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..artifacts import sha256_file, write_bytes_atomic, write_json_atomic
from ..artifacts.manifest import load_json
from ..errors import IntegrityError

SIDECAR_SUFFIX = ".manifest.json"


def sidecar_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


def weights_csv(weights: np.ndarray) -> bytes:
    lines = ["cluster,weight"] + [f"{k},{float(w)!r}" for k, w in enumerate(np.asarray(weights, float))]
    return ("\n".join(lines) + "\n").encode("utf-8")


def write_weights(path: str | os.PathLike, weights: np.ndarray, provenance: dict) -> tuple[Path, Path]:
    """Write the weights file, then its sidecar (with the file's sha256), each atomically."""
    p = Path(path)
    write_bytes_atomic(p, weights_csv(weights))
    side = sidecar_path(p)
    write_json_atomic(side, {**provenance, "weights_file": p.name, "weights_sha256": sha256_file(p),
                             "clusters": int(len(weights))})
    return p, side


def read_provenance(path: str | os.PathLike) -> dict:
    """The sidecar of a weights file, checked against the file's sha256."""
    p = Path(path)
    side = load_json(sidecar_path(p))
    if side is None:
        raise IntegrityError(f"{sidecar_path(p)}: missing or unreadable; rerun `clusterclip propose`")
    if side.get("weights_sha256") != sha256_file(p):
        raise IntegrityError(f"{p}: changed since `clusterclip propose` wrote it (sha256 differs from "
                             f"{sidecar_path(p).name}); rerun `clusterclip propose`")
    return side
