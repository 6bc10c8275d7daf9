"""One proxy run, end to end: build the model, train it on a schedule's stream, score the held-out set,
write the run's files (:mod:`.runfiles`). Resumable: a run killed anywhere restarts from its last
checkpoint and gives the same files as an uninterrupted one."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..progress import bar as progress_bar
from .model import build_model, model_config, parameter_counts
from .runfiles import TARGET_GROUP, checkpoint_path, save_model, write_heldout_loss, write_loss_curve
from .score import Scores, document_losses, group_scores
from .settings import ProxySettings
from .stream import ScheduleStream, trained_cluster_tokens
from .train import Runtime, deterministic, resolve_runtime, train


@dataclass(frozen=True)
class EvalDocs:
    """The held-out documents as the scorer reads them: token arrays (delimiters included) and each one's
    group (its cluster; :data:`~.runfiles.TARGET_GROUP` for a target text)."""

    docs: list[np.ndarray]
    groups: np.ndarray


def plan_steps(settings: ProxySettings, streams: list[ScheduleStream]) -> int:
    """Steps every run trains: ``--tokens`` in whole steps, else one pass of the smallest schedule."""
    step_tokens = settings.batch * settings.context
    if settings.tokens is not None:
        return max(settings.tokens // step_tokens, 1)
    return min(s.loader.steps_per_pass for s in streams)


def summary(scores: Scores, result_losses: list[float]) -> dict:
    """The figures a run reports: overall and cluster-balanced held-out loss (clusters only), the target
    texts' loss (when there are some), the final training loss (mean of the last 10 % of steps)."""
    clusters = scores.select(scores.groups != TARGET_GROUP)
    target = scores.select(scores.groups == TARGET_GROUP)
    tail = result_losses[-max(len(result_losses) // 10, 1):]
    return {"overall": clusters.overall, "balanced": clusters.balanced,
            "target": target.overall if len(target.groups) else None,
            "final_train_loss": float(np.mean(tail)) if tail else None}


def train_and_score(stream: ScheduleStream, evaluation: EvalDocs, settings: ProxySettings, *, seed: int, steps: int,
                    n_clusters: int, run_dir: str | os.PathLike, identity: dict | None = None,
                    runtime: Runtime | None = None, desc: str = "proxy", progress: bool = True, pbar=None) -> dict:
    """Train one proxy on ``stream`` for ``steps`` steps from the initial weights of ``seed``, score it on
    ``evaluation`` and write ``run_dir``'s files; returns the run's record (summary, speed, realised mixture)."""
    import torch

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    runtime = runtime or resolve_runtime(settings, steps)
    config = model_config(stream.vocab_size, settings.context, settings.model_config)
    identity = {**(identity or {}), "settings": settings.record(), "seed": seed, "steps": steps,
                "config": config.to_dict(), "runtime": runtime.record()}
    with deterministic(runtime):
        model = build_model(config, seed).to(runtime.device)
        counts = parameter_counts(model)
        result = train(model, stream.loader.batch, steps, settings, runtime, checkpoint_path=checkpoint_path(run_dir),
                       identity=identity, desc=desc, progress=progress, pbar=pbar)
        scores = score(model, evaluation, settings, runtime, progress=progress and pbar is None, desc=desc)
    write_heldout_loss(run_dir, scores)
    write_loss_curve(run_dir, result.losses, result.lrs, settings.batch * settings.context)
    save_model(run_dir, model.to("cpu"))
    with contextlib.suppress(FileNotFoundError):
        checkpoint_path(run_dir).unlink()
    del model
    if runtime.device.startswith("cuda"):
        torch.cuda.empty_cache()
    mixture = trained_cluster_tokens(stream, steps, n_clusters)
    return {"seed": seed, "steps": steps, "train_tokens": steps * settings.batch * settings.context,
            "parameters": counts, "runtime": runtime.record(), **summary(scores, result.losses),
            "tokens_per_second": result.tokens_per_second, "resumed_at_step": result.resumed_at,
            "mixture_tokens": [int(v) for v in mixture]}


def score(model, evaluation: EvalDocs, settings: ProxySettings, runtime: Runtime, *, progress: bool = True,
          desc: str = "proxy") -> Scores:
    """The held-out scores of ``model`` per group (float32, windows of ``settings.context``)."""
    total = int(sum(max(len(d) - 1, 0) for d in evaluation.docs))
    with progress_bar(total, desc=f"{desc} scoring", unit="tok", unit_scale=True, enabled=progress) as pbar:
        sums, predictions = document_losses(model, evaluation.docs, settings.context, device=runtime.device,
                                            batch=settings.eval_batch, on_tokens=pbar.update)
    return group_scores(sums, predictions, evaluation.groups)
