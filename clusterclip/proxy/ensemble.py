"""Several proxies in one process: stacked parameters, one vmapped step (``torch.func`` model ensembling).

Small proxies leave a GPU mostly idle; stacking ``M`` of them (one per schedule or seed) makes every
matrix product ``M`` times larger at the cost of one. Each member keeps its own data, weights,
optimizer state, gradient clipping and losses: the step is ``vmap`` of the one-model step over the
members, the loss the members' sum (whose gradient for each member is that member's own), AdamW
elementwise on the stacked tensors (weight decay on what is a matrix per member), and the gradient
norm clipped per member. The result equals training each member alone up to float rounding (the
batched products add in another order): ``tests/test_proxy.py`` checks it. Attention runs through
transformers' eager path inside the ensemble (SDPA has no batching rule on the CPU).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from ..faults import checkpoint as fault_point
from ..progress import bar as progress_bar
from .runfiles import load_checkpoint, save_checkpoint
from .settings import ProxySettings
from .train import Batches, Runtime, TrainResult, learning_rate, next_token_loss


class Stacked:
    """The members' parameters stacked on a new first axis (tied tensors stay tied) and their buffers."""

    def __init__(self, models: list) -> None:
        import torch

        self.base = copy.deepcopy(models[0])
        self.base.config._attn_implementation = "eager"
        named = [dict(m.named_parameters(remove_duplicate=False)) for m in models]
        by_tensor: dict[int, torch.Tensor] = {}
        self.params: dict[str, torch.Tensor] = {}
        for name, p in named[0].items():
            key = id(p)
            if key not in by_tensor:
                stacked = torch.stack([n[name].detach() for n in named]).clone()
                by_tensor[key] = torch.nn.Parameter(stacked)
            self.params[name] = by_tensor[key]
        self.unique = list(by_tensor.values())
        self.buffers = {name: torch.stack([dict(m.named_buffers())[name] for m in models])
                        for name, _ in models[0].named_buffers()}
        self.models = models
        self.module = torch.nn.ParameterList(self.unique)  #: what a checkpoint saves and loads

    def unstack(self) -> None:
        """Copy each member's trained weights back into its model."""
        import torch

        with torch.no_grad():
            for i, m in enumerate(self.models):
                for name, p in m.named_parameters():
                    p.copy_(self.params[name][i])


def ensemble_losses(stacked: Stacked, x, y, runtime: Runtime):
    """``[M]`` losses of the members on their own batches ``x``, ``y`` (``[M, B, T]``)."""
    from torch.func import functional_call, vmap

    def one(params, buffers, xi, yi):
        class Call:  # next_token_loss calls model(input_ids=...)
            def __call__(self, input_ids):
                return functional_call(stacked.base, (params, buffers), (input_ids,), tie_weights=False)

        return next_token_loss(Call(), xi, yi, runtime)

    return vmap(one)(stacked.params, stacked.buffers, x, y)


def clip_per_member(stacked: Stacked, max_norm: float) -> None:
    """Each member's gradient scaled to global norm ``max_norm`` at most (``clip_grad_norm_`` per member)."""
    import torch

    grads = [p.grad for p in stacked.unique if p.grad is not None]
    norms = torch.stack([g.reshape(g.shape[0], -1).double().pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
    for g in grads:
        g.mul_(scale.to(g.dtype).view(-1, *([1] * (g.dim() - 1))))


def _optimizer(stacked: Stacked, settings: ProxySettings):
    """AdamW over the stacked tensors: weight decay on what is a matrix for each member (3-D and up here)."""
    import torch

    decay = [p for p in stacked.unique if p.dim() >= 3]
    rest = [p for p in stacked.unique if p.dim() < 3]
    return torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=settings.lr, betas=(0.9, 0.95), eps=1e-8,
                             fused=True)


def _step(stacked: Stacked, opt, batches: list[Batches], step: int, steps: int, settings: ProxySettings,
          runtime: Runtime) -> list[float]:
    import torch

    pairs = [b(step) for b in batches]
    x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(runtime.device)
    y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(runtime.device)
    for group in opt.param_groups:
        group["lr"] = learning_rate(step, steps, settings)
    loss = ensemble_losses(stacked, x, y, runtime)
    loss.sum().backward()
    if settings.grad_clip > 0:
        clip_per_member(stacked, settings.grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return [float(v) for v in loss.detach().cpu().tolist()]


def train_ensemble(models: list, batches: list[Batches], steps: int, settings: ProxySettings, runtime: Runtime, *,
                   checkpoint_path: Path | None = None, identity: dict | None = None, desc: str = "proxies",
                   progress: bool = True) -> list[TrainResult]:
    """Train the ``models`` together, member ``i`` on ``batches[i]``; returns each member's result. Resumable
    from ``checkpoint_path`` like :func:`~.train.train` (one checkpoint for the whole ensemble)."""
    stacked = Stacked(models)
    opt = _optimizer(stacked, settings)
    identity = {**(identity or {}), "members": len(models)}
    start, flat = (load_checkpoint(checkpoint_path, stacked.module, opt, identity) if checkpoint_path
                   else (0, []))
    losses = [flat[i::len(models)] for i in range(len(models))]
    step_tokens = settings.batch * settings.context
    t0 = time.perf_counter()
    with progress_bar(steps * step_tokens * len(models), desc=desc, unit="tok", unit_scale=True,
                      initial=start * step_tokens * len(models), enabled=progress) as pbar:
        for step in range(start, steps):
            for curve, value in zip(losses, _step(stacked, opt, batches, step, steps, settings, runtime)):
                curve.append(value)
            pbar.update(step_tokens * len(models))
            done = step + 1
            if checkpoint_path is not None and (done % settings.checkpoint_every == 0 or done == steps):
                save_checkpoint(checkpoint_path, stacked.module, opt, done,
                                [v for row in zip(*losses) for v in row], identity)
                fault_point("proxy.checkpoint")
    seconds = time.perf_counter() - t0
    stacked.unstack()
    lrs = [learning_rate(s, steps, settings) for s in range(steps)]
    return [TrainResult(curve, start, seconds, (steps - start) * step_tokens, lrs) for curve in losses]
