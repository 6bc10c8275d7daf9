"""The owner of a ``proxy`` directory (RUNS) and of each run's files: their layout, writing, reading back.

RUNS holds one directory per run and three tables::

    runs.parquet       one row per run: run, schedule (its path), seed, steps, train_tokens, overall,
                       balanced, target (NaN without target texts), final_train_loss, tokens_per_second
    mixtures.parquet   run, cluster, tokens: the input tokens of each cluster the run trained on
    pool.parquet       cluster, documents, tokens: the corpus minus the held-out documents (what a
                       schedule can draw), tokens counted with the schedules' delimiters
    NAME/              one run
    manifest.json

One run (one schedule, one seed) is a directory::

    heldout_loss.parquet   cluster int32, tokens int64, loss float64: per cluster, the mean next-token
                           loss per token over its held-out documents (the target texts: cluster -1)
    loss_curve.parquet     step int64, tokens int64 (trained after the step), loss float64, lr float64
    model/                 the final model, ``save_pretrained`` (config.json + model.safetensors)
    checkpoint.pt          while it trains: model, optimizer, step and losses (removed when it is done)

Nothing else opens these files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import atomic_path, write_parquet_atomic
from ..artifacts.directory import ArtifactDir
from ..artifacts.manifest import MANIFEST, Stats, read_stats, written
from ..errors import IntegrityError
from .score import Scores

RUNS_FILE = "runs.parquet"
MIXTURES_FILE = "mixtures.parquet"
POOL_FILE = "pool.parquet"
HELDOUT_LOSS = "heldout_loss.parquet"
LOSS_CURVE = "loss_curve.parquet"
MODEL_DIR = "model"
CHECKPOINT = "checkpoint.pt"
#: the group of the ``--target`` texts in ``heldout_loss.parquet``
TARGET_GROUP = -1


def write_heldout_loss(run_dir: str | os.PathLike, scores: Scores) -> Path:
    import pyarrow as pa

    path = Path(run_dir) / HELDOUT_LOSS
    write_parquet_atomic(path, pa.table({"cluster": pa.array(scores.groups.astype(np.int32)),
                                         "tokens": pa.array(scores.tokens.astype(np.int64)),
                                         "loss": pa.array(scores.loss.astype(np.float64))}))
    return path


def read_heldout_loss(run_dir: str | os.PathLike) -> Scores:
    import pyarrow.parquet as pq

    path = Path(run_dir) / HELDOUT_LOSS
    try:
        table = pq.read_table(path, columns=["cluster", "tokens", "loss"])
    except (OSError, ValueError, KeyError) as e:
        raise IntegrityError(f"{path}: unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                             f"rerun `clusterclip proxy`") from None
    return Scores(table.column("cluster").to_numpy().astype(np.int64), table.column("tokens").to_numpy(),
                  table.column("loss").to_numpy())


def write_loss_curve(run_dir: str | os.PathLike, losses: list[float], lrs: list[float], step_tokens: int) -> Path:
    import pyarrow as pa

    steps: np.ndarray = np.arange(len(losses), dtype=np.int64)
    path = Path(run_dir) / LOSS_CURVE
    write_parquet_atomic(path, pa.table({"step": steps, "tokens": (steps + 1) * int(step_tokens),
                                         "loss": np.asarray(losses, dtype=np.float64),
                                         "lr": np.asarray(lrs[: len(losses)], dtype=np.float64)}))
    return path


def read_loss_curve(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(Path(run_dir) / LOSS_CURVE)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def save_model(run_dir: str | os.PathLike, model) -> Path:
    """``model.save_pretrained(RUN/model)`` (safetensors): what anyone reloads with ``AutoModelForCausalLM``."""
    from transformers.utils import logging as hf_logging

    path = Path(run_dir) / MODEL_DIR
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Writing model shards" bar: not ours, and not hidden by --quiet
    try:
        model.save_pretrained(path)
    finally:
        if was:
            hf_logging.enable_progress_bar()
    return path


def checkpoint_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINT


def save_checkpoint(path: Path, model, optimizer, step: int, losses: list[float], identity: dict) -> None:
    """Model, optimizer, step and losses so far, written atomically (hidden temporary file, fsync, rename)."""
    import torch

    state = {"identity": identity, "step": int(step), "losses": list(losses), "model": model.state_dict(),
             "optimizer": optimizer.state_dict()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, model, optimizer, identity: dict) -> tuple[int, list[float]]:
    """``(step, losses)`` of a checkpoint of this very run (same ``identity``) loaded into the model and
    optimizer; ``(0, [])`` when there is none or it belongs to another run."""
    import torch

    if not path.is_file():
        return 0, []
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a torn or foreign file: start over (it is replaced at the next checkpoint)
        return 0, []
    if state.get("identity") != identity:
        return 0, []
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), [float(v) for v in state["losses"]]


# --------------------------------------------------------------------------- the RUNS directory
#: the columns of ``runs.parquet`` (and the keys of each run's record that fill them)
RUN_COLUMNS = ("run", "schedule", "seed", "steps", "train_tokens", "overall", "balanced", "target",
               "final_train_loss", "tokens_per_second")


def write_runs(build: str | os.PathLike, records: list[dict], pool_docs: np.ndarray, pool_tokens: np.ndarray) -> list[str]:
    """``runs.parquet``, ``mixtures.parquet`` and ``pool.parquet`` of the run ``records``; returns their names."""
    import pyarrow as pa

    build = Path(build)
    columns = {c: [r[c] for r in records] for c in RUN_COLUMNS}
    columns["target"] = [float("nan") if v is None else v for v in columns["target"]]
    columns["tokens_per_second"] = [float("nan") if v is None else v for v in columns["tokens_per_second"]]
    write_parquet_atomic(build / RUNS_FILE, pa.table(columns))
    k = len(pool_tokens)
    write_parquet_atomic(build / MIXTURES_FILE, pa.table({
        "run": np.repeat([r["run"] for r in records], k),
        "cluster": np.tile(np.arange(k, dtype=np.int32), len(records)),
        "tokens": np.concatenate([np.asarray(r["mixture_tokens"], np.int64) for r in records]) if records
        else np.zeros(0, np.int64)}))
    write_parquet_atomic(build / POOL_FILE, pa.table({"cluster": np.arange(k, dtype=np.int32),
                                                      "documents": np.asarray(pool_docs, np.int64),
                                                      "tokens": np.asarray(pool_tokens, np.int64)}))
    return [RUNS_FILE, MIXTURES_FILE, POOL_FILE]


def run_files(build: str | os.PathLike, name: str) -> list[str]:
    """The files of run ``name`` below ``build`` (relative paths), for the journal and the manifest."""
    root = Path(build)
    return sorted(p.relative_to(root).as_posix() for p in (root / name).rglob("*") if p.is_file())


@dataclass(frozen=True)
class ProxyStats(Stats):
    """A proxy manifest's ``statistics``, read through :attr:`RunsDir.stats` (see
    :class:`~clusterclip.artifacts.manifest.Stats` for the versions)."""

    runs: list[dict]  #: every run's figures (run, schedule, seed, losses, parameters, sampler, max_repeats, ...)
    train_tokens: int  #: tokens each proxy trained on
    schedules: dict | None = written()  #: per schedule, the mean and spread over seeds
    steps: int | None = written()
    pool_tokens: int | None = written()
    heldout_texts: int | None = written()
    clusters: int | None = written()


class RunsDir(ArtifactDir):
    """A finished ``proxy`` directory, checked on opening (manifest, file sizes); every read checks the sha256 of
    the file read first."""

    step = "proxy"

    def __init__(self, path: str | os.PathLike, *, verify: bool = False):
        super().__init__(path, verify=verify)
        self.stats = read_stats(ProxyStats, self.manifest, self.path / MANIFEST)

    def runs(self) -> dict[str, np.ndarray]:
        """``runs.parquet`` as columns (one entry per run, in the order the runs were made)."""
        table = self.parquet(RUNS_FILE).read()
        return {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}

    def mixtures(self, names) -> np.ndarray:
        """``[len(names), K]`` input tokens per cluster of the runs ``names``."""
        table = self.parquet(MIXTURES_FILE).read()
        run = table.column("run").to_numpy(zero_copy_only=False)
        tokens = table.column("tokens").to_numpy()
        cluster = table.column("cluster").to_numpy()
        k = int(cluster.max()) + 1 if len(cluster) else 0
        out: np.ndarray = np.zeros((len(names), k), np.int64)
        for i, name in enumerate(names):
            mine = run == name
            out[i, cluster[mine]] = tokens[mine]
        return out

    def pool(self) -> tuple[np.ndarray, np.ndarray]:
        """``(documents, tokens)`` per cluster of the training pool."""
        table = self.parquet(POOL_FILE).read()
        return table.column("documents").to_numpy(), table.column("tokens").to_numpy()

    def heldout_loss(self, name: str) -> Scores:
        self.verify_file(f"{name}/{HELDOUT_LOSS}")
        return read_heldout_loss(self.path / name)

    def loss_curve(self, name: str) -> dict[str, np.ndarray]:
        self.verify_file(f"{name}/{LOSS_CURVE}")
        return read_loss_curve(self.path / name)

    def model_dir(self, name: str) -> Path:
        """``RUNS/NAME/model`` (every file's sha256 checked): load it with ``AutoModelForCausalLM.from_pretrained``."""
        prefix = f"{name}/{MODEL_DIR}/"
        self.verify({r["path"] for r in self.manifest["outputs"] if r["path"].startswith(prefix)})
        return self.path / name / MODEL_DIR
