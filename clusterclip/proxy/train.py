"""Training one proxy: a plain, deterministic loop over a :class:`~.stream.SequentialLoader`.

AdamW (weight decay on matrices only, the fused kernel), linear warm-up then cosine decay, global
gradient-norm clipping, next-token cross-entropy on every position of each window (llm.c's
``x = window[:-1]``, ``y = window[1:]``). bfloat16 autocast where the hardware computes it natively
(CUDA, CPUs with AVX512-BF16/AMX); weights and optimizer state stay float32.

Deterministic: the same settings, data and thread count on the same machine give the same losses
to the last digit (``torch.use_deterministic_algorithms``, a fixed thread count, no dropout, no
randomness after initialisation). Resumable: every ``checkpoint_every`` steps the model, the
optimizer and the losses so far are written atomically to one checkpoint file; a run killed at any
point restarts from the last one and ends with exactly the losses of an uninterrupted run (the data
of step ``s`` is a function of ``s`` alone).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..faults import checkpoint as fault_point
from ..progress import bar as progress_bar
from .runfiles import load_checkpoint, save_checkpoint
from .settings import COMPILE_MIN_STEPS, ProxySettings

Batches = Callable[[int], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Runtime:
    """Where and how a proxy computes: ``device``, the autocast dtype (None: float32), the CPU threads and
    whether the training step is compiled."""

    device: str
    autocast: str | None
    threads: int
    compiled: bool = False

    def record(self) -> dict:
        return {"device": self.device, "autocast": self.autocast, "threads": self.threads, "compiled": self.compiled}


def can_compile(device: str) -> bool:
    """Whether torch.compile's default backend can build kernels here (a C++ compiler; Triton on CUDA)."""
    import importlib.util
    import shutil

    if device.startswith("cuda"):
        return importlib.util.find_spec("triton") is not None
    return any(shutil.which(cc) for cc in ("g++", "c++", "clang++"))


def resolve_runtime(settings: ProxySettings, steps: int = 0) -> Runtime:
    """``--device auto`` -> cuda or cpu; ``--dtype auto`` -> bfloat16 where native, else float32; ``--compile
    auto`` -> compiled for runs of :data:`COMPILE_MIN_STEPS` steps or more where it can be."""
    import torch

    from ..embed.encoder import cpu_has_native_bf16, resolve_device
    from ..tokens.build import default_workers

    device = resolve_device(settings.device)
    if settings.dtype == "auto":
        native = torch.cuda.is_bf16_supported() if device.startswith("cuda") else cpu_has_native_bf16()
        autocast = "bfloat16" if native else None
    else:
        autocast = None if settings.dtype == "float32" else settings.dtype
    compiled = settings.compile == "on" or (settings.compile == "auto" and steps >= COMPILE_MIN_STEPS
                                             and can_compile(device))
    return Runtime(device, autocast, int(settings.threads or default_workers()), compiled)


@contextlib.contextmanager
def deterministic(runtime: Runtime) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the ``with`` block (restored after)."""
    import torch

    threads, was = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if runtime.device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.set_num_threads(runtime.threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------- the schedule of the learning rate
def warmup_steps(settings: ProxySettings, steps: int) -> int:
    return int(round(settings.warmup * steps))


def learning_rate(step: int, steps: int, settings: ProxySettings) -> float:
    """Linear warm-up over :func:`warmup_steps`, then cosine from ``lr`` down to ``lr * min_lr_ratio``."""
    warm = warmup_steps(settings, steps)
    if step < warm:
        return settings.lr * (step + 1) / warm
    span = max(steps - warm, 1)
    progress = min((step - warm) / span, 1.0)
    floor = settings.lr * settings.min_lr_ratio
    return floor + (settings.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model, settings: ProxySettings, device: str):
    """AdamW, weight decay on the matrices (2-D and up) only; the fused kernel (CPU and CUDA)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)


# --------------------------------------------------------------------------- one step
def next_token_loss(model, x, y, runtime: Runtime):
    """Mean cross-entropy of predicting ``y`` from ``x`` (``[B, T]``), float32."""
    import torch
    import torch.nn.functional as F

    device_type = "cuda" if runtime.device.startswith("cuda") else "cpu"
    dtype = getattr(torch, runtime.autocast) if runtime.autocast else torch.float32
    with torch.autocast(device_type, dtype=dtype, enabled=runtime.autocast is not None):
        logits = model(input_ids=x).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))


def loss_function(model, runtime: Runtime) -> Callable:
    """``loss(x, y)`` of :func:`next_token_loss`, compiled (fixed shapes) when ``runtime.compiled``."""
    import torch

    def loss(x, y):
        return next_token_loss(model, x, y, runtime)

    return torch.compile(loss, dynamic=False) if runtime.compiled else loss


def train_step(model, optimizer, loss_fn: Callable, x, y, lr: float, settings: ProxySettings) -> float:
    """One optimizer step; returns the loss of the batch (before the update)."""
    import torch

    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = loss_fn(x, y)
    loss.backward()
    if settings.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip, foreach=True)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


# --------------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    """``losses``: the loss of every step; ``resumed_at``: the step this process started from;
    ``seconds`` and ``tokens``: the wall time and tokens of the steps this process trained."""

    losses: list[float]
    resumed_at: int
    seconds: float
    tokens: int
    lrs: list[float] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.seconds if self.seconds > 0 and self.tokens else None


def skip_ahead(pbar, n: int) -> None:
    """Advance a bar by work done before this process started, without counting it in the rate (honest ETA)."""
    if hasattr(pbar, "skip"):  # a bar of another process (see :mod:`.runner`)
        pbar.skip(n)
        return
    pbar.n += n
    pbar.last_print_n = pbar.n
    pbar.refresh()


def train(model, batches: Batches, steps: int, settings: ProxySettings, runtime: Runtime, *,
          checkpoint_path: Path | None = None, identity: dict | None = None, desc: str = "proxy",
          progress: bool = True, pbar=None) -> TrainResult:
    """Train ``model`` (on ``runtime.device``) for ``steps`` steps of ``batches(step)``; resumable from
    ``checkpoint_path`` (written every ``settings.checkpoint_every`` steps and at the end). ``pbar``: a bar
    (tokens) shared by several runs, else one of this run's own."""
    import torch

    identity = dict(identity or {})
    optimizer = make_optimizer(model, settings, runtime.device)
    start, losses = (load_checkpoint(checkpoint_path, model, optimizer, identity) if checkpoint_path
                     else (0, []))
    step_tokens = settings.batch * settings.context
    loss_fn = loss_function(model, runtime)
    model.train()
    t0 = time.perf_counter()
    bar = progress_bar(steps * step_tokens, desc=desc, unit="tok", unit_scale=True, initial=start * step_tokens,
                       enabled=progress) if pbar is None else contextlib.nullcontext(pbar)
    with bar as pbar:
        if bar is not pbar and start:
            skip_ahead(pbar, start * step_tokens)
        for step in range(start, steps):
            x, y = (torch.from_numpy(a).to(runtime.device) for a in batches(step))
            losses.append(train_step(model, optimizer, loss_fn, x, y, learning_rate(step, steps, settings), settings))
            pbar.update(step_tokens)
            pbar.set_postfix_str(f"{desc} loss {losses[-1]:.3f}", refresh=False)
            done = step + 1
            if checkpoint_path is not None and (done % settings.checkpoint_every == 0 or done == steps):
                save_checkpoint(checkpoint_path, model, optimizer, done, losses, identity)
                fault_point("proxy.checkpoint")
    seconds = time.perf_counter() - t0
    lrs = [learning_rate(s, steps, settings) for s in range(steps)]
    return TrainResult(losses, start, seconds, (steps - start) * step_tokens, lrs)
