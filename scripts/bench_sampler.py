"""Benchmark the samplers against ``numpy.random.Generator.permutation``.

For every budget B and cluster count K a synthetic corpus is built: N = B / 10 documents (at
least K) in K clusters with log-normal sizes (a few large clusters, many small ones), so under
uniform cluster choice the small clusters hit the clip early and many clusters leave the pool
during the run. ``max_repeats`` is 20, so the pool holds 2 B samples and every budget is
reachable. The baseline is one ``rng.permutation(B)``: producing a random order of B items
cannot be much cheaper, so ``x perm`` (planning time / permutation time) says how far each
sampler is from that practical limit.

``--balance`` adds, for ``clusterclip``, the token-aware modes measured in the same run:
``tokens+weights`` (``balance="tokens"`` with random per-cluster weights; document lengths
log-normal, so clusters differ in mean length) and ``budget-tokens`` (per-cluster token budgets
of the same total tokens as the samples budget, in expectation); ``x cc`` is their time over the
plain ``clusterclip`` time.

``--course`` adds, for ``clusterclip``, a schedule that changes course (issue 28), timed interleaved with
plain ``clusterclip`` (every repeat times each mode once, in turn; the table gives each mode's best time
and ``x cc`` its best over plain's best):

- ``3 stages``: warm-up by size (``alpha=1``) for the first 10%, ClusterClip to 90%, then an annealing
  stage weighted by quality (random per-cluster weights, and document scores with power 2);
- ``3 st+gap``: the same with ``--min-repeat-gap G`` (``--gap``, default 1000 samples);
- ``gap``: plain ``clusterclip`` with the gap;
- ``continue``: continue the plain schedule's first half with new per-cluster weights, against
  ``suffix``: planning a fresh schedule of the second half's length (what ``--continue`` may cost).

Usage::

    python scripts/bench_sampler.py                       # 1M, 10M, 100M x 10, 1000, 100000
    python scripts/bench_sampler.py --sizes 1M 10M --clusters 1000
    python scripts/bench_sampler.py --sizes 100M --clusters 1000 100000 --samplers clusterclip --balance
    python scripts/bench_sampler.py ... --clock cpu         # CPU time: steadier on a busy machine
    python scripts/bench_sampler.py --sizes 100M --clusters 100000 --samplers clusterclip --course --gap 1000
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np

from clusterclip.schedule.law import Budget, RepeatGap, SamplingLaw, Stage
from clusterclip.schedule.sampling import SAMPLERS, Prefix, plan_schedule

MAX_REPEATS = 20


def parse_count(text: str) -> int:
    """``"10M"`` -> 10_000_000 (suffixes k, M, G)."""
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1].lower())
    return int(float(text[:-1]) * scale) if scale else int(text)


def synthetic_labels(n_docs: int, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Cluster ids of ``n_docs`` shuffled documents in ``n_clusters`` log-normal-sized clusters
    (every cluster has at least one document)."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.5, n_clusters)
    sizes = 1 + np.floor(weights / weights.sum() * (n_docs - n_clusters)).astype(np.int64)
    sizes[np.argmax(sizes)] += n_docs - sizes.sum()
    return rng.permutation(np.repeat(np.arange(n_clusters), sizes))


def balance_modes(labels: np.ndarray, n_samples: int, n_clusters: int, seed: int):
    """``(name, law, budget, lengths)`` of the token-aware modes."""
    rng = np.random.default_rng(seed + 1)
    lengths = np.maximum(1, rng.lognormal(5.0, 1.0, len(labels))).astype(np.int64)
    weights = rng.uniform(0.5, 2.0, n_clusters)
    law = SamplingLaw(max_repeats=MAX_REPEATS, cluster_weights=weights)
    yield "tok+weights", SamplingLaw(max_repeats=MAX_REPEATS, balance="tokens", cluster_weights=weights), \
        Budget(samples=n_samples), lengths
    yield "budget-tok", law, Budget(budget_tokens=int(n_samples * lengths.mean())), lengths


def course_modes(labels: np.ndarray, n_samples: int, n_clusters: int, seed: int, gap: int):
    """``(name, function)`` of plain ``clusterclip`` and the modes of ``--course`` (see the module docstring)."""
    rng = np.random.default_rng(seed + 2)
    weights = rng.uniform(0.5, 2.0, n_clusters)
    scores = rng.lognormal(0.0, 1.0, len(labels))
    plain = SamplingLaw(max_repeats=MAX_REPEATS)
    stages = [Stage(SamplingLaw(max_repeats=MAX_REPEATS, alpha=1.0), until=0.1), Stage(plain, until=0.9),
              Stage(SamplingLaw(max_repeats=MAX_REPEATS, cluster_weights=weights, doc_scores=scores, doc_power=2.0))]
    budget = Budget(samples=n_samples)
    half = n_samples // 2
    old = plan_schedule(labels, plain, budget, seed=seed)
    prefix = Prefix(old.doc_id[:half], old.cluster[:half], old.repeat[:half])
    new = SamplingLaw(max_repeats=MAX_REPEATS, cluster_weights=weights)
    del old
    yield "clusterclip", lambda: plan_schedule(labels, plain, budget, seed=seed)
    yield "3 stages", lambda: plan_schedule(labels, stages, budget, seed=seed)
    yield "3 st+gap", lambda: plan_schedule(labels, stages, budget, seed=seed, gap=RepeatGap(gap))
    yield "gap", lambda: plan_schedule(labels, plain, budget, seed=seed, gap=RepeatGap(gap))
    yield "continue", lambda: plan_schedule(labels, new, budget, seed=seed + 1, prefix=prefix)
    yield "suffix", lambda: plan_schedule(labels, new, Budget(samples=n_samples - half), seed=seed + 1)


def time_course(labels, n_samples: int, n_clusters: int, args, size_text: str) -> None:
    """Time the ``--course`` modes interleaved and print their rows (``x cc``: over plain clusterclip)."""
    modes = list(course_modes(labels, n_samples, n_clusters, args.seed, args.gap))
    best = dict.fromkeys(name for name, _ in modes)
    for _ in range(args.repeat):
        for name, function in modes:
            seconds = timed(function, 1)
            best[name] = seconds if best[name] is None else min(best[name], seconds)
    plain = best["clusterclip"]
    for name, seconds in best.items():
        against = f"x suffix {seconds / best['suffix']:.2f}" if name == "continue" else f"x cc {seconds / plain:.2f}"
        print(f"| {size_text:>8} | {n_clusters:>8} | {name:<11} | {seconds:8.2f} | {n_samples / seconds:10.3g} | "
              f"{'':>6} | {against}", flush=True)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def timed(function, repeat: int) -> float:
    """Best time of ``repeat`` runs (the first run also pays for fresh memory pages), by ``clock``."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = clock()
        function()
        best = min(best, clock() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["1M", "10M", "100M"],
                        help="budgets in samples (suffixes k, M, G)")
    parser.add_argument("--clusters", nargs="+", type=int, default=[10, 1000, 100_000])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2, help="report the best of this many runs")
    parser.add_argument("--balance", action="store_true",
                        help="also time clusterclip with --balance tokens + weights and with --budget-tokens")
    parser.add_argument("--course", action="store_true",
                        help="also time 3 stages, the repeat gap and --continue against plain clusterclip, "
                             "interleaved")
    parser.add_argument("--gap", type=int, default=1000, help="--course: the repeat gap in samples")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or this process's CPU time (the samplers run on one thread, so on a "
                             "machine shared with other jobs CPU time is far less noisy than wall time)")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]

    print(f"max_repeats={MAX_REPEATS}, N = B/10 documents, log-normal cluster sizes, "
          f"best of {args.repeat} runs, {args.clock} time")
    print(f"| {'samples':>8} | {'clusters':>8} | {'sampler':<11} | {'seconds':>8} | "
          f"{'samples/s':>10} | {'x perm':>6} |")
    print(f"|{'-' * 10}|{'-' * 10}|{'-' * 13}|{'-' * 10}:|{'-' * 11}:|{'-' * 7}:|")
    for size_text in args.sizes:
        n_samples = parse_count(size_text)
        rng = np.random.default_rng(args.seed)
        baseline = timed(lambda rng=rng, n=n_samples: rng.permutation(n), args.repeat)
        print(f"| {size_text:>8} | {'-':>8} | {'permutation':<11} | {baseline:8.2f} | "
              f"{n_samples / baseline:10.3g} | {1:6.2f} |", flush=True)
        for n_clusters in args.clusters:
            labels = synthetic_labels(max(n_samples // 10, n_clusters), n_clusters, args.seed)
            for sampler in args.samplers:
                seconds = timed(lambda labels=labels, sampler=sampler, n=n_samples: plan_schedule(
                                    labels, SamplingLaw(sampler=sampler, max_repeats=MAX_REPEATS), Budget(samples=n),
                                    seed=args.seed), args.repeat)
                print(f"| {size_text:>8} | {n_clusters:>8} | {sampler:<11} | {seconds:8.2f} | "
                      f"{n_samples / seconds:10.3g} | {seconds / baseline:6.2f} |", flush=True)
                if args.balance and sampler == "clusterclip":
                    for mode, law, budget, lengths in balance_modes(labels, n_samples, n_clusters, args.seed):
                        t = timed(lambda labels=labels, law=law, budget=budget, lengths=lengths: plan_schedule(
                            labels, law, budget, lengths=lengths, seed=args.seed), args.repeat)
                        print(f"| {size_text:>8} | {n_clusters:>8} | {mode:<11} | {t:8.2f} | "
                              f"{n_samples / t:10.3g} | {t / baseline:6.2f} | x cc {t / seconds:.2f}", flush=True)
                if args.course and sampler == "clusterclip":
                    time_course(labels, n_samples, n_clusters, args, size_text)


if __name__ == "__main__":
    main()
