"""The owner of a ``holdout`` directory (EVAL): its layout, writing it and reading it back.

Layout (SPEC §7)::

    heldout.parquet   doc_id int64 (ascending), cluster int32: every held-out document
    manifest.json     settings, inputs (the embed and cluster directories; the --target file's path,
                      size and sha256), statistics (documents per cluster, unscored clusters)

Texts are never copied: the held-out documents are read back from the corpus through the embed
directory, the target texts from the ``--target`` file after checking its sha256.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import write_parquet_atomic
from ..artifacts.directory import ArtifactDir
from ..artifacts.manifest import MANIFEST, Stats, read_stats, written
from ..errors import IntegrityError, MismatchError

HELDOUT_FILE = "heldout.parquet"


def write_heldout(build: Path, doc_id: np.ndarray, cluster: np.ndarray) -> str:
    """``heldout.parquet`` (doc_id int64, cluster int32), atomically; returns its name."""
    import pyarrow as pa

    write_parquet_atomic(Path(build) / HELDOUT_FILE, pa.table({
        "doc_id": pa.array(np.asarray(doc_id, np.int64)), "cluster": pa.array(np.asarray(cluster, np.int32))}))
    return HELDOUT_FILE


@dataclass(frozen=True)
class HoldoutStats(Stats):
    """A holdout manifest's ``statistics`` (written by the holdout step, read through :attr:`EvalDir.stats`; see
    :class:`~clusterclip.artifacts.manifest.Stats` for the versions)."""

    heldout_docs: int  #: documents held out
    scored_clusters: int | None = written()  #: clusters that give at least one document
    unscored_clusters: list[int] | None = written()  #: clusters of one document (not scored)
    min_per_cluster: int | None = written()
    max_per_cluster: int | None = written()
    clusters: int | None = written()  #: K
    cluster_heldout: list[int] | None = written()  #: documents held out of each cluster
    target_texts: int | None = written()  #: texts of ``--target`` (None: no target)


class EvalDir(ArtifactDir):
    """A finished ``holdout`` directory, checked on opening (manifest, file sizes)."""

    step = "holdout"

    def __init__(self, path: str | os.PathLike, *, verify: bool = False):
        super().__init__(path, verify=verify)
        self.stats = read_stats(HoldoutStats, self.manifest, self.path / MANIFEST)
        self.n_docs = int(self.stats.heldout_docs)

    def heldout(self) -> tuple[np.ndarray, np.ndarray]:
        """``(doc_id int64, cluster int64)`` of every held-out document (the file's sha256 checked first)."""
        table = self.parquet(HELDOUT_FILE).read(columns=["doc_id", "cluster"])
        doc_id = table.column("doc_id").to_numpy().astype(np.int64)
        if len(doc_id) != self.n_docs:
            raise IntegrityError(f"{self.path / HELDOUT_FILE}: {len(doc_id)} rows but the manifest records "
                                 f"{self.n_docs}; rerun `clusterclip holdout --overwrite`")
        return doc_id, table.column("cluster").to_numpy().astype(np.int64)

    def upstream(self, key: str) -> dict:
        """How the manifest names its ``embed`` or ``cluster`` input (path and manifest sha256)."""
        return dict(self.info.upstream(key))

    def check_made_from(self, emb: ArtifactDir, cl: ArtifactDir) -> None:
        """One line when this EVAL was drawn from another embed or cluster directory than ``emb`` and ``cl``."""
        for key, owner in (("embed", emb), ("cluster", cl)):
            mine = self.upstream(key)
            if mine.get("manifest_sha256") != owner.record()["manifest_sha256"]:
                raise MismatchError(f"{self.path}: held out from another {key} directory ({mine.get('path')}) than "
                                    f"{owner.path}; run `clusterclip holdout` on these, or schedule the ones it "
                                    f"was drawn from")

    def check_same_inputs(self, other: ArtifactDir, keys=("embed", "cluster")) -> None:
        """One line when ``other`` (a schedule, say) was built from another embed or cluster directory."""
        for key in keys:
            mine, theirs = self.upstream(key), other.info.upstream(key)
            if mine.get("manifest_sha256") != theirs.get("manifest_sha256"):
                raise MismatchError(f"{other.path}: built from another {key} directory than {self.path} "
                                    f"({theirs.get('path')} vs {mine.get('path')}); hold out from the corpus and "
                                    f"clustering it was built from, or rebuild it from those of EVAL")

    def target_file(self) -> dict | None:
        """The ``--target`` file's record (``path``, ``bytes``, ``sha256``), or None."""
        return self.info.inputs.get("target")

    def target_texts(self) -> list[str]:
        """The target texts, read back from the ``--target`` file after checking its sha256 ([] without one)."""
        from ..artifacts import sha256_file
        from .heldout import target_texts

        rec = self.target_file()
        if rec is None:
            return []
        p = Path(rec["path"])
        if not p.is_file() or p.stat().st_size != rec["bytes"] or sha256_file(p) != rec["sha256"]:
            raise MismatchError(f"{p}: the --target file of {self.path} is gone or changed since `clusterclip "
                                f"holdout` read it; restore it or rerun holdout --overwrite")
        return target_texts(p, self.settings["target_column"])
