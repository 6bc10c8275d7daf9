"""The owner of a ``mixtures`` directory: its layout, writing its weights and reading it back.

Layout (one transaction: the manifest lists every file below, with its sha256)::

    weights.parquet             mixture int32, cluster int32, weight float64: one row per mixture and non-empty cluster
    weights/mixture-III.csv     mixture III's ``--weights`` file (cluster,weight)
    mixture-III/                mixture III's dry-run schedule: its manifest.json and order.parquet (a part of
                                this output: it has no ``.clusterclip/`` of its own, and is rebuilt only by
                                rerunning ``mixtures``)
    manifest.json               settings, inputs, every file above, statistics (mixtures, samples of each)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import write_bytes_atomic, write_parquet_atomic
from ..artifacts.directory import ArtifactDir
from ..artifacts.manifest import MANIFEST, Stats, read_manifest, read_stats, written
from ..errors import ClusterClipError

WEIGHTS_FILE = "weights.parquet"
WEIGHTS_DIR = "weights"


def mixture_name(i: int) -> str:
    """``mixture-III``: the directory of mixture ``i``'s schedule (and the stem of its weights file)."""
    return f"mixture-{i:03d}"


def weights_name(i: int) -> str:
    """``weights/mixture-III.csv``: mixture ``i``'s ``--weights`` file, relative to the directory."""
    return f"{WEIGHTS_DIR}/{mixture_name(i)}.csv"


def write_weights_table(path: Path, weights: np.ndarray, present: np.ndarray) -> None:
    """``weights.parquet``: the weight of every non-empty cluster (``present``) in every mixture (rows of
    ``weights``), atomically."""
    import pyarrow as pa

    n = len(weights)
    table = pa.table({"mixture": np.repeat(np.arange(n, dtype=np.int32), len(present)),
                      "cluster": np.tile(present.astype(np.int32), n),
                      "weight": weights[:, present].reshape(-1)})
    write_parquet_atomic(path, table)


def write_weights_csv(path: Path, weights: np.ndarray, present: np.ndarray) -> None:
    """One mixture's ``--weights`` file (``cluster,weight``, exact floats), atomically."""
    lines = ["cluster,weight"] + [f"{k},{float(weights[k])!r}" for k in present]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode("utf-8"))


@dataclass(frozen=True)
class MixturesStats(Stats):
    """A mixtures manifest's ``statistics`` (written by the mixtures step, read through :attr:`MixturesDir.stats`;
    see :class:`~clusterclip.artifacts.manifest.Stats` for the versions)."""

    mixtures: int  #: mixtures drawn (one dry-run schedule each)
    k: int | None = written()  #: clusters
    samples: list[int] | None = written()  #: each mixture's schedule's samples
    realised: list[dict] | None = written()  #: each mixture's drawn weights against what its schedule got


class MixturesDir(ArtifactDir):
    """A finished ``mixtures`` directory, checked on opening (manifest, file sizes)."""

    step = "mixtures"

    def __init__(self, path: str | os.PathLike, *, verify: bool = False):
        super().__init__(path, verify=verify)
        self.stats = read_stats(MixturesStats, self.manifest, self.path / MANIFEST)
        self.n = int(self.stats.mixtures)

    def schedule_dir(self, i: int) -> Path:
        """Mixture ``i``'s dry-run schedule directory (open it with :class:`~clusterclip.schedule.ScheduleDir`)."""
        return self.path / mixture_name(i)

    def weights_file(self, i: int) -> Path:
        """Mixture ``i``'s ``--weights`` file, its sha256 checked first."""
        self.verify_file(weights_name(i))
        return self.path / weights_name(i)

    def weights_table(self):
        """``weights.parquet`` as a pyarrow table (its sha256 checked first)."""
        return self.parquet(WEIGHTS_FILE).read()

    def check(self) -> list[str]:
        """What ``verify`` adds to the digests: the weights table holds ``n`` mixtures, and each mixture's
        schedule lists exactly the files this manifest holds under it, with the same digests, and drew with the
        weights file beside it. One line per problem."""
        problems: list[str] = []
        table = self.weights_table()
        found = sorted(set(table.column("mixture").to_pylist()))
        if found != list(range(self.n)):
            problems.append(f"{self.path / WEIGHTS_FILE}: holds mixtures {found[:3]}... but the manifest records "
                            f"{self.n}; rerun `clusterclip mixtures --overwrite`")
        recorded = {r["path"]: r for r in self.manifest["outputs"]}
        for i in range(self.n):
            problems.extend(self._check_schedule(i, recorded))
        return problems

    def _check_schedule(self, i: int, recorded: dict) -> list[str]:
        prefix = mixture_name(i) + "/"
        try:
            child = read_manifest(self.schedule_dir(i), "schedule")
        except ClusterClipError as e:
            return [str(e)]
        mine = {p[len(prefix):]: r for p, r in recorded.items() if p.startswith(prefix) and p != prefix + MANIFEST}
        theirs = {r["path"]: r for r in child["outputs"]}
        fix = "rerun `clusterclip mixtures --overwrite`"
        if {p: (r["bytes"], r["sha256"]) for p, r in mine.items()} != \
                {p: (r["bytes"], r["sha256"]) for p, r in theirs.items()}:
            return [f"{self.schedule_dir(i) / MANIFEST}: lists other files than {self.path / MANIFEST} holds for "
                    f"it; {fix}"]
        csv = recorded.get(weights_name(i))
        if csv is None or child["settings"].get("weights_digest") != csv["sha256"]:
            return [f"{self.schedule_dir(i) / MANIFEST}: was not drawn with {self.path / weights_name(i)}; {fix}"]
        return []
