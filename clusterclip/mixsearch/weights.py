"""The owner of a proposal's files: ``weights.csv`` (what ``schedule --weights`` reads) and its sidecar.

``NAME.csv`` has the columns ``cluster`` and ``weight``, one row per cluster (every cluster listed:
``schedule`` gives an unlisted cluster weight 1; 0 leaves a cluster out), weights written in full
precision. ``NAME.manifest.json`` beside it says where they come from: the runs and the fit, the
constraints, the predicted losses, the file's sha256 and the ``schedule`` flags that realise them.

:class:`WeightsOutput` is the transaction the step driver runs ``propose`` in (its ``--out`` is this
file, not a directory): everything is checked before anything is written; an existing file is
replaced only when its sidecar proves ``propose`` wrote it (and then only with ``--overwrite`` if the
job differs: the same FIT and settings again is "done"); never through a symbolic link; the weights
file first, then the sidecar that names its sha256, each atomically.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..artifacts import Job, sha256_file, write_bytes_atomic, write_json_atomic
from ..artifacts.manifest import TOOL, load_json
from ..errors import InputError, IntegrityError, MismatchError
from ..settings import differences

SIDECAR_SUFFIX = ".manifest.json"


def sidecar_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


def weights_csv(weights: np.ndarray) -> bytes:
    lines = ["cluster,weight"] + [f"{k},{float(w)!r}" for k, w in enumerate(np.asarray(weights, float))]
    return ("\n".join(lines) + "\n").encode("utf-8")


def write_weights_csv(path: str | os.PathLike, weights: np.ndarray) -> None:
    """The weights file alone (atomically); its sidecar comes after it (:func:`sidecar_record`)."""
    write_bytes_atomic(path, weights_csv(weights))


def sidecar_record(provenance: dict, path: Path, sha256: str) -> dict:
    """The sidecar of the weights file ``path`` of this ``sha256``: ``provenance`` and the file's name and digest."""
    return {**provenance, "weights_file": path.name, "weights_sha256": sha256}


def write_weights(path: str | os.PathLike, weights: np.ndarray, provenance: dict) -> tuple[Path, Path]:
    """Write the weights file, then its sidecar (with the file's sha256), each atomically."""
    p = Path(path)
    write_weights_csv(p, weights)
    side = sidecar_path(p)
    write_json_atomic(side, sidecar_record({**provenance, "clusters": int(len(weights))}, p, sha256_file(p)))
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


class WeightsOutput:
    """``propose``'s ``--out``: a weights file and its sidecar, as the step driver's transaction (module docstring).

    The build is the file's own directory: the step writes the weights file at its final path (atomically), and
    :meth:`commit` writes the sidecar naming its sha256. Not resumable (seconds of work): "done" or "fresh".
    """

    def __init__(self, out: str | os.PathLike, job: Job, *, overwrite: bool):
        self.out = Path(out)
        self.job = job
        self.overwrite = overwrite
        self.build = self.out.parent
        self.state: str | None = None
        self.manifest: dict | None = None
        self.previous: dict | None = None

    def __enter__(self) -> WeightsOutput:
        self.state = self.peek()
        if self.state == "done":
            self.manifest = self.previous
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        return None

    def peek(self) -> str:
        """"fresh" (nothing there, or our own file replaced), "done" (the same job), or a one-line refusal."""
        self._check_plain_files()
        if not self.build.is_dir():
            raise InputError(f"--out {self.out}: its directory {self.build} does not exist; create it first")
        if not self.out.exists():
            if sidecar_path(self.out).exists():
                raise InputError(f"--out {self.out}: {sidecar_path(self.out).name} is there without its weights file; "
                                 f"remove it or choose another --out")
            return "fresh"
        self.previous = self._our_provenance()
        old = {k: self.previous.get(k) for k in self.job.record()}
        if old == self.job.record():
            return "done"
        if not self.overwrite:
            what = differences(old.get("settings") or {}, self.job.settings) or ["the fit (another FIT directory or run)"]
            raise MismatchError(f"--out {self.out}: holds the proposal of another job ({'; '.join(what)}); pass "
                                f"--overwrite to replace it, or choose another --out")
        return "fresh"

    def _check_plain_files(self) -> None:
        for p in (self.out, sidecar_path(self.out)):
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
                raise InputError(f"--out {p}: exists and is not a plain file (a link or a directory); choose another "
                                 f"--out")

    def _our_provenance(self) -> dict:
        try:
            return read_provenance(self.out)
        except IntegrityError:
            raise InputError(f"--out {self.out}: exists and was not written by `clusterclip propose` (or was edited "
                             f"since); choose another --out or remove it") from None

    def manifest_for(self, job: Job, outputs: list[dict], statistics: dict, accounting: dict | None,
                     extra: dict | None) -> dict:
        """The sidecar: the job, the step's provenance (``extra``), the weights file's name and sha256."""
        (weights,) = outputs
        provenance = {**job.record(), "tool": TOOL, "version": __version__, **(extra or {})}
        return sidecar_record(provenance, self.out.with_name(weights["path"]), weights["sha256"])

    def commit(self, manifest: dict, *, keep_previous: bool = False) -> None:
        write_json_atomic(sidecar_path(self.out), manifest)
        self.manifest = manifest
