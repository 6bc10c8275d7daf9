"""Benchmark proxy training: clusterclip's loop against transformers' ``Trainer`` on the same model and data,
and both against the machine's GEMM peak, all measured in the same run.

Both train the default proxy (a 4-layer Llama of width 256; ``--vocab`` sets the vocabulary) from the same
initial weights, on the same windows of a token stream in the same order, with the same optimizer settings
(AdamW, betas 0.9/0.95, weight decay on matrices, clipping at 1.0, cosine to 10 % without warm-up). The Trainer
reads the windows from an ``IterableDataset`` (its order kept), computes its own loss from ``labels`` /
``shift_labels`` (the same targets) and runs as shipped (``adamw_torch``, no compile). Runs alternate
(ours, Trainer, ours, ...) so a busy machine slows both alike; each figure is the median of ``--repeats``
runs over the steps after ``--warmup-steps`` (compilation happens in the first step), and of the whole run
(the model's construction and compilation included: what a short run pays).

Printed: tokens/s of each, the ratio ours / Trainer, the largest difference between the loss curves, the
GEMM peak (float32 and bfloat16 matmul of ``--gemm`` x ``--gemm`` matrices, the larger is the machine's
peak) and each loop's model FLOPs utilisation (6 · N · tokens/s / peak, N the parameters a token multiplies
with). ``--profile`` adds where one step of each loop spends its time (``torch.profiler``: matrix products,
attention, cross-entropy, optimizer, the rest) and the ceiling that sets: the Trainer's step over its matmul
time, the most any loop computing the same products could gain over it. The data: a schedule's ``bin`` shards (``--sched``) or a synthetic bigram stream (Zipf rows), so the
loss falls as on text. Record the load (``uptime``) beside the figures: the script prints it.

    python scripts/bench_proxy.py                          # 2 x 12 steps of 16 x 256 tokens, each loop
    python scripts/bench_proxy.py --steps 20 --repeats 3 --threads 2
    python scripts/bench_proxy.py --sched demo/ablation/random --batch 8 --threads 1 --profile
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


def bench_settings(args):
    """The proxy's settings for both loops, without warm-up: transformers' warm-up starts from a learning rate of 0
    and ours from ``lr / warm-up steps``, so with one the curves would differ by the schedule, not by the loop."""
    from clusterclip.proxy.settings import ProxySettings

    return ProxySettings(batch=args.batch, context=args.context, lr=args.lr, warmup=0.0)


def fresh_model(vocab: int, context: int):
    from clusterclip.proxy.model import build_model, model_config

    return build_model(model_config(vocab, context), seed=0)


def rates(marks: list[float], started: float, args) -> tuple[float, float]:
    """(tokens/s over the steps after ``--warmup-steps``, tokens/s of the whole run from ``started``: the model's
    construction and compilation included)."""
    timed = marks[args.warmup_steps - 1:]
    step_tokens = args.batch * args.context
    return (len(timed) - 1) * step_tokens / (timed[-1] - timed[0]), len(marks) * step_tokens / (marks[-1] - started)


def ours(windows, vocab, args, compiled: bool, prof=None) -> tuple[tuple[float, float], list[float], int]:
    """(:func:`rates`, losses, matmul parameters) of clusterclip's loop; ``prof``: a profiler stepped after each
    step."""
    import torch

    from clusterclip.proxy.model import parameter_counts
    from clusterclip.proxy.train import Runtime, learning_rate, loss_function, make_optimizer, train_step

    started = time.perf_counter()
    s = bench_settings(args)
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
        if prof is not None:
            prof.step()
    return rates(marks, started, args), losses, parameter_counts(model)["matmul"]


def trainer(windows, vocab, args, prof=None) -> tuple[tuple[float, float], list[float]]:
    """(:func:`rates`, losses) of transformers' Trainer on the same windows; ``prof``: a profiler stepped after
    each step."""
    import tempfile

    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from clusterclip.proxy.train import warmup_steps

    started = time.perf_counter()

    class Windows(torch.utils.data.IterableDataset):
        def __iter__(self):
            for w in windows:
                for row in torch.from_numpy(w):
                    yield {"input_ids": row[:-1], "labels": row[:-1], "shift_labels": row[1:]}

    marks, losses = [], []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            marks.append(time.perf_counter())
            if prof is not None:
                prof.step()

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    s = bench_settings(args)
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
    return rates(marks, started, args), losses


#: where a step's time goes: the first category whose pattern is in an operator's name takes its self time
CATEGORIES = (("matmul", ("aten::mm", "aten::addmm", "aten::bmm")),
              ("attention", ("scaled_dot_product", "flash_attention")),
              ("cross-entropy", ("log_softmax", "nll_loss")),
              ("optimizer", ("adam", "_foreach", "clip_grad", "linalg_vector_norm")))


def breakdown(run, steps: int) -> dict[str, float]:
    """Seconds of one profiled step of ``run(prof)`` (the last of its ``steps``) per category of
    :data:`CATEGORIES`, the rest ("elementwise and other": norms, rotary, activations, copies, autograd) and
    the total."""
    from torch.profiler import ProfilerActivity, profile, schedule

    with profile(activities=[ProfilerActivity.CPU],
                 schedule=schedule(wait=0, warmup=1, active=1, repeat=1, skip_first=steps - 2)) as prof:
        run(prof)
    out = dict.fromkeys([n for n, _ in CATEGORIES] + ["elementwise and other"], 0.0)
    for e in prof.key_averages():
        name = next((n for n, pats in CATEGORIES if any(p in e.key for p in pats)), "elementwise and other")
        out[name] += e.self_cpu_time_total / 1e6
    out["total"] = sum(out.values())
    return out


def print_breakdown(windows, vocab, args) -> None:
    """Where one step of each loop spends its time (torch.profiler, self CPU time), and the most the loop could
    gain over the Trainer if everything but its matrix products took no time."""
    parts = {"ours": breakdown(lambda prof: ours(windows, vocab, args, False, prof), args.steps),
             "Trainer": breakdown(lambda prof: trainer(windows, vocab, args, prof), args.steps)}
    names = [n for n, _ in CATEGORIES] + ["elementwise and other", "total"]
    print("one step, profiled (self CPU seconds, share of the step):")
    print(f"{'':<23}" + "".join(f"{loop:>18}" for loop in parts))
    for n in names:
        print(f"{n:<23}" + "".join(f"{p[n]:>9.3f} s {p[n] / p['total']:>5.0%}" for p in parts.values()))
    ceiling = parts["Trainer"]["total"] / parts["Trainer"]["matmul"]
    print(f"ceiling: a loop of the same matrix products and nothing else would run {ceiling:.2f}x the Trainer "
          f"(the Trainer's step over its matmul time)")


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
    ap.add_argument("--profile", action="store_true",
                    help="also profile one step of each loop: where the time goes, and the ceiling it sets")
    args = ap.parse_args()
    import torch

    from clusterclip.tokens.build import default_workers

    args.threads = args.threads or default_workers()
    torch.set_num_threads(args.threads)
    print(f"load before: {load()}  threads: {args.threads}  torch {torch.__version__}")
    windows, vocab = windows_from(args)
    import transformers.trainer  # noqa: F401  (imported before any loop is timed: no loop pays for the imports)

    fresh_model(vocab, args.context)
    peaks = {"float32": gemm_peak(args.gemm, torch.float32), "bfloat16": gemm_peak(args.gemm, torch.bfloat16)}
    peak = max(peaks.values())
    names = ["ours", "Trainer"] + ([] if args.no_compile else ["ours compiled"])
    loops: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    curves = {}
    n_params = 0
    for _ in range(args.repeats):
        pair, curves["ours"], n_params = ours(windows, vocab, args, compiled=False)
        loops["ours"].append(pair)
        pair, curves["Trainer"] = trainer(windows, vocab, args)
        loops["Trainer"].append(pair)
        if not args.no_compile:
            pair, curves["ours compiled"], _ = ours(windows, vocab, args, compiled=True)
            loops["ours compiled"].append(pair)
    base = statistics.median(r for r, _ in loops["Trainer"])
    base_whole = statistics.median(w for _, w in loops["Trainer"])
    print(f"GEMM peak ({args.gemm}^2 matmul): float32 {peaks['float32']:.1f} GFLOP/s, bfloat16 "
          f"{peaks['bfloat16']:.1f} GFLOP/s; MFU below is against {peak:.1f}")
    print(f"model: {n_params / 1e6:.2f} M matmul parameters, {args.batch} x {args.context} tokens per step, "
          f"{args.steps} steps ({args.warmup_steps} untimed), vocab {vocab}")
    print(f"{'loop':<15}{'tokens/s':>10}{'x Trainer':>11}{'MFU':>8}{'whole run':>11}{'x Trainer':>11}"
          f"{'max |loss - Trainer|':>23}")
    for name, got in loops.items():
        rate, whole = statistics.median(r for r, _ in got), statistics.median(w for _, w in got)
        diff = max(abs(a - b) for a, b in zip(curves[name], curves["Trainer"]))
        print(f"{name:<15}{rate:>10,.0f}{rate / base:>10.2f}x{6 * n_params * rate / (peak * 1e9):>8.1%}"
              f"{whole:>11,.0f}{whole / base_whole:>10.2f}x{diff:>23.4f}")
    print("tokens/s: the steps after the untimed ones; whole run: all steps, from building the model (and "
          "compiling) to the last step")
    print(f"final loss: ours {curves['ours'][-1]:.4f}, Trainer {curves['Trainer'][-1]:.4f}")
    if args.profile:
        print_breakdown(windows, vocab, args)
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
