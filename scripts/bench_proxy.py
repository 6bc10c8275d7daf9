"""Benchmark proxy training: clusterclip's loop against transformers' ``Trainer`` on the same model and data,
and both against the machine's GEMM peak, all measured in the same run.

Both train the default proxy (a 4-layer Llama of width 256; ``--vocab`` sets the vocabulary) from the same
initial weights, on the same windows of a token stream in the same order, with the same optimizer settings
(AdamW, betas 0.9/0.95, weight decay on matrices, clipping at 1.0, warm-up + cosine to 10 %). The Trainer
reads the windows from an ``IterableDataset`` (its order kept), computes its own loss from ``labels`` /
``shift_labels`` (the same targets) and runs as shipped (``adamw_torch``, no compile). Runs alternate
(ours, Trainer, ours, ...) so a busy machine slows both alike; each figure is the median of ``--repeats``
runs over the steps after ``--warmup-steps`` (compilation happens in the first step).

Printed: tokens/s of each, the ratio ours / Trainer, the largest difference between the loss curves, the
GEMM peak (float32 and bfloat16 matmul of ``--gemm`` x ``--gemm`` matrices, the larger is the machine's
peak) and each loop's model FLOPs utilisation (6 · N · tokens/s / peak, N the parameters a token multiplies
with). The data: a schedule's ``bin`` shards (``--sched``) or a synthetic bigram stream (Zipf rows), so the
loss falls as on text. Record the load (``uptime``) beside the figures: the script prints it.

    python scripts/bench_proxy.py                          # 2 x 12 steps of 16 x 256 tokens, each loop
    python scripts/bench_proxy.py --steps 20 --repeats 3 --threads 2
    python scripts/bench_proxy.py --sched demo/schedule --vocab 8192
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def gemm_peak(n: int, dtype, seconds: float = 1.5) -> float:
    """GFLOP/s of repeated ``n x n`` matmuls in ``dtype`` (best of a few timed bursts)."""
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def bigram_stream(n_tokens: int, vocab: int, seed: int = 0) -> np.ndarray:
    """A token stream from a random bigram model with Zipf-shaped rows (so a model can learn something)."""
    rng = np.random.default_rng(seed)
    ranks = 1.0 / np.arange(1, vocab + 1) ** 1.1
    perms = np.stack([rng.permutation(vocab) for _ in range(256)])  # 256 row shapes, shared by the tokens
    cdf = np.cumsum(ranks / ranks.sum())
    out = np.empty(n_tokens, dtype=np.int64)
    out[0] = 0
    u = rng.random(n_tokens)
    for i in range(1, n_tokens):
        out[i] = perms[out[i - 1] % 256][min(int(np.searchsorted(cdf, u[i])), vocab - 1)]
    return out


def windows_from(args) -> tuple[list[np.ndarray], int]:
    """``steps`` windows of ``batch x context + 1`` tokens, in order, and the vocabulary."""
    need = args.steps * args.batch * args.context + 1
    if args.sched:
        from clusterclip.proxy.stream import open_schedule_stream
        from clusterclip.schedule import ScheduleDir

        stream = open_schedule_stream(ScheduleDir(args.sched), "bin", args.batch, args.context)
        out = []
        for s in range(args.steps):
            x, y = stream.loader.batch(s)
            out.append(np.concatenate([x, y[:, -1:]], axis=1))
        return out, stream.vocab_size
    tokens = bigram_stream(need, args.vocab)
    step = args.batch * args.context
    wins = [tokens[s * step: (s + 1) * step + 1] for s in range(args.steps)]
    return [np.stack([w[i * args.context: (i + 1) * args.context + 1] for i in range(args.batch)]) for w in wins], \
        args.vocab


def fresh_model(vocab: int, context: int):
    from clusterclip.proxy.model import build_model, model_config

    return build_model(model_config(vocab, context), seed=0)


def ours(windows, vocab, args, compiled: bool) -> tuple[float, list[float], int]:
    """(tokens/s after the warm-up steps, losses, matmul parameters) of clusterclip's loop."""
    import torch

    from clusterclip.proxy.model import parameter_counts
    from clusterclip.proxy.settings import ProxySettings
    from clusterclip.proxy.train import Runtime, learning_rate, loss_function, make_optimizer, train_step

    s = ProxySettings(batch=args.batch, context=args.context, lr=args.lr)
    runtime = Runtime("cpu", None, args.threads, compiled)
    model = fresh_model(vocab, args.context)
    opt = make_optimizer(model, s, "cpu")
    loss_fn = loss_function(model, runtime)
    model.train()
    losses, marks = [], []
    for step, w in enumerate(windows):
        t = torch.from_numpy(w)
        losses.append(train_step(model, opt, loss_fn, t[:, :-1], t[:, 1:], learning_rate(step, args.steps, s), s))
        marks.append(time.perf_counter())
    timed = marks[args.warmup_steps - 1:]
    rate = (len(timed) - 1) * args.batch * args.context / (timed[-1] - timed[0])
    return rate, losses, parameter_counts(model)["matmul"]


def trainer(windows, vocab, args) -> tuple[float, list[float]]:
    """(tokens/s after the warm-up steps, losses) of transformers' Trainer on the same windows."""
    import tempfile

    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from clusterclip.proxy.settings import ProxySettings
    from clusterclip.proxy.train import warmup_steps

    class Windows(torch.utils.data.IterableDataset):
        def __iter__(self):
            for w in windows:
                for row in torch.from_numpy(w):
                    yield {"input_ids": row[:-1], "labels": row[:-1], "shift_labels": row[1:]}

    marks, losses = [], []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            marks.append(time.perf_counter())

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    s = ProxySettings(batch=args.batch, context=args.context, lr=args.lr)
    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch, max_steps=args.steps, learning_rate=s.lr,
            lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": s.min_lr_ratio},
            warmup_steps=warmup_steps(s, args.steps), weight_decay=s.weight_decay, adam_beta1=0.9, adam_beta2=0.95,
            adam_epsilon=1e-8, max_grad_norm=s.grad_clip, logging_steps=1, logging_first_step=True, report_to=[],
            save_strategy="no", use_cpu=True, dataloader_num_workers=0, remove_unused_columns=False, seed=0,
            disable_tqdm=True)
        Trainer(model=fresh_model(vocab, args.context), args=targs, train_dataset=Windows(),
                callbacks=[Clock()]).train()
    timed = marks[args.warmup_steps - 1:]
    return (len(timed) - 1) * args.batch * args.context / (timed[-1] - timed[0]), losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup-steps", type=int, default=2, help="steps left out of the timing (compilation)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads [default: all cores]")
    ap.add_argument("--gemm", type=int, default=1024)
    ap.add_argument("--sched", default=None, help="a schedule directory with bin shards (else a bigram stream)")
    ap.add_argument("--no-compile", action="store_true", help="leave the compiled loop out")
    args = ap.parse_args()
    import torch

    from clusterclip.tokens.build import default_workers

    args.threads = args.threads or default_workers()
    torch.set_num_threads(args.threads)
    print(f"load before: {load()}  threads: {args.threads}  torch {torch.__version__}")
    windows, vocab = windows_from(args)
    peaks = {"float32": gemm_peak(args.gemm, torch.float32), "bfloat16": gemm_peak(args.gemm, torch.bfloat16)}
    peak = max(peaks.values())
    loops = {"ours": [], "Trainer": []} | ({} if args.no_compile else {"ours compiled": []})
    curves = {}
    n_params = 0
    for _ in range(args.repeats):
        rate, curves["ours"], n_params = ours(windows, vocab, args, compiled=False)
        loops["ours"].append(rate)
        rate, curves["Trainer"] = trainer(windows, vocab, args)
        loops["Trainer"].append(rate)
        if not args.no_compile:
            rate, curves["ours compiled"], _ = ours(windows, vocab, args, compiled=True)
            loops["ours compiled"].append(rate)
    base = statistics.median(loops["Trainer"])
    print(f"GEMM peak ({args.gemm}^2 matmul): float32 {peaks['float32']:.1f} GFLOP/s, bfloat16 "
          f"{peaks['bfloat16']:.1f} GFLOP/s; MFU below is against {peak:.1f}")
    print(f"model: {n_params / 1e6:.2f} M matmul parameters, {args.batch} x {args.context} tokens per step, "
          f"{args.steps} steps ({args.warmup_steps} untimed), vocab {vocab}")
    print(f"{'loop':<15}{'tokens/s':>10}{'x Trainer':>11}{'MFU':>8}{'max |loss - Trainer|':>23}")
    for name, rates in loops.items():
        rate = statistics.median(rates)
        diff = max(abs(a - b) for a, b in zip(curves[name], curves["Trainer"]))
        print(f"{name:<15}{rate:>10,.0f}{rate / base:>10.2f}x{6 * n_params * rate / (peak * 1e9):>8.1%}{diff:>23.4f}")
    print(f"final loss: ours {curves['ours'][-1]:.4f}, Trainer {curves['Trainer'][-1]:.4f}")
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
