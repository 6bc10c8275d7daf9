"""The owner of a proxy run's files: their layout, writing and reading them back.

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
from pathlib import Path

import numpy as np

from ..artifacts import atomic_path, write_parquet_atomic
from ..errors import IntegrityError
from .score import Scores

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

    steps = np.arange(len(losses), dtype=np.int64)
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
    path = Path(run_dir) / MODEL_DIR
    model.save_pretrained(path)
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
