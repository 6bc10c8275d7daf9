"""What a schedule was asked for and what it got: its budget, and why the two differ (issue 26 item 6).

:func:`budget_record` is the manifest's ``statistics.budget``::

    {"asked": {"kind": "tokens", "tokens": 300000},             # or samples / epochs (+ samples) / budget_tokens
     "got": {"samples": 1234, "tokens": 305487},
     "difference": {"tokens": 5487, "relative": 0.01829},      # got - asked, in the budget's unit
     "notes": ["... why they differ ..."]}

The reasons it names are the sampler's rules, never guesses: a token budget ends at the first whole sample
that reaches it (the last sample passes it by less than its own length); per-cluster token budgets
(``--budget-tokens``) end each cluster at the first sample that reaches its share, so each cluster passes
its share by less than one sample, unless its clip ends it first (then it falls short); the clip can empty the
pool before the budget (``--allow-partial``); a budget in samples fixes the samples, not the tokens, so
``--balance tokens`` (which draws clusters of short documents more often) gives fewer tokens than the same
samples at the corpus's mean length. :func:`format_budget` is the summary's lines.
"""

from __future__ import annotations

import numpy as np

from .directory import ScheduleStats
from .settings import ScheduleSettings


def budget_record(s: ScheduleSettings, stats: dict, *, n_docs: int, sample_tokens: np.ndarray | None,
                  lengths: np.ndarray | None = None, lengths_known: np.ndarray | None = None) -> dict:
    """``statistics.budget`` of a schedule planned with settings ``s`` (see the module docstring).

    ``stats``: its :func:`.stats.schedule_statistics`; ``sample_tokens``: the tokens of each sample in order
    (None when the schedule counted none); ``lengths``/``lengths_known``: every document's sample length and
    whether it was tokenized (for the corpus's mean sample length)."""
    asked = _asked(s, n_docs)
    got = {"samples": int(stats["samples"]), "tokens": stats.get("tokens")}
    unit = "tokens" if asked["kind"] in ("tokens", "budget_tokens") else "samples"
    target = int(asked[asked["kind"]] if unit == "tokens" else asked["samples"])
    record: dict = {"asked": asked, "got": got, "notes": []}
    have = got[unit]
    if have is not None:
        diff = int(have) - target
        record["difference"] = {unit: diff, "relative": round(diff / target, 6) if target else None}
    notes = record["notes"]
    if stats.get("exhausted"):
        notes.append(f"the clip emptied the pool after {got['samples']:,} samples (every document used its "
                     f"max_repeats times), short of the budget (--allow-partial)")
    if asked["kind"] == "tokens" and sample_tokens is not None and len(sample_tokens) and not stats.get("exhausted"):
        notes.append(_token_budget_note(target, sample_tokens))
    elif asked["kind"] == "budget_tokens" and stats.get("cluster_tokens") is not None:
        notes += _cluster_budget_notes(stats)
    if unit == "samples" and s.balance == "tokens" and got["tokens"] is not None and lengths is not None:
        notes.append(_balance_note(got, lengths, lengths_known))
    if asked["kind"] == "epochs" and asked["epochs"] * n_docs != asked["samples"]:
        notes.append(f"{asked['epochs']:g} epochs of {n_docs:,} documents is {asked['epochs'] * n_docs:,.2f} "
                     f"samples, rounded to {asked['samples']:,}")
    return record


def _asked(s: ScheduleSettings, n_docs: int) -> dict:
    from .sampling import epochs_to_samples

    if s.budget_tokens is not None:
        return {"kind": "budget_tokens", "budget_tokens": int(s.budget_tokens)}
    if s.tokens is not None:
        return {"kind": "tokens", "tokens": int(s.tokens)}
    if s.samples is not None:
        return {"kind": "samples", "samples": int(s.samples)}
    epochs = 1.0 if s.epochs is None else float(s.epochs)
    return {"kind": "epochs", "epochs": epochs, "samples": epochs_to_samples(epochs, n_docs),
            "default": s.epochs is None}


def _token_budget_note(target: int, sample_tokens: np.ndarray) -> str:
    last = int(sample_tokens[-1])
    total = int(sample_tokens.sum())
    return (f"a token budget ends at the first sample that reaches it and samples are whole: the last one "
            f"({last:,} tokens) passed {target:,} by {total - target:,}")


def _cluster_budget_notes(stats: dict) -> list[str]:
    """Per-cluster token budgets: each passes its share by less than one sample, or its clip ends it short."""
    budget = np.asarray(stats["cluster_token_budget"], np.int64)
    got = np.asarray(stats["cluster_tokens"], np.int64)[: len(budget)]
    drawn = budget > 0
    over = np.where(drawn, np.maximum(got - budget, 0), 0)
    short = np.where(drawn, np.maximum(budget - got, 0), 0)
    notes = []
    if over.any():
        top = int(np.argmax(over))
        notes.append(f"--budget-tokens is split over the clusters by weight and each cluster ends at the first sample "
                     f"that reaches its share, so each passes it by less than one sample: +{int(over.sum()):,} tokens "
                     f"over {int(np.count_nonzero(over)):,} clusters (most: cluster {top}, +{int(over[top]):,})")
    if short.any():
        notes.append(f"{int(np.count_nonzero(short)):,} clusters reached their clip (every document used max_repeats "
                     f"times) before their share: -{int(short.sum()):,} tokens")
    return notes


def _balance_note(got: dict, lengths: np.ndarray, known: np.ndarray | None) -> str:
    lengths = lengths if known is None else lengths[known]
    mean = float(lengths.mean()) if len(lengths) else 0.0
    even = got["samples"] * mean
    ratio = got["tokens"] / even if even else float("nan")
    return (f"the budget counts samples, not tokens: --balance tokens draws clusters of short documents more often, "
            f"so these {got['samples']:,} samples hold {got['tokens']:,} tokens, {ratio:.0%} of the {even:,.0f} "
            f"they would at the corpus's mean sample length ({mean:,.1f}); give --tokens T to fix the tokens")


def format_budget(record: dict) -> list[str]:
    """The summary's lines: asked, got, the difference, and why."""
    asked, got = record["asked"], record["got"]
    kind = asked["kind"]
    if kind == "budget_tokens":
        wanted = f"{asked['budget_tokens']:,} tokens (--budget-tokens)"
    elif kind == "tokens":
        wanted = f"{asked['tokens']:,} tokens (--tokens)"
    elif kind == "samples":
        wanted = f"{asked['samples']:,} samples (--samples)"
    else:
        wanted = (f"{asked['samples']:,} samples ("
                  + ("one epoch, the default" if asked.get("default") else f"--epochs {asked['epochs']:g}") + ")")
    have = f"{got['samples']:,} samples" + (f", {got['tokens']:,} tokens" if got.get("tokens") is not None else "")
    diff = record.get("difference") or {}
    unit = "tokens" if "tokens" in diff else "samples"
    delta = ""
    if diff.get(unit):
        delta = f" ({diff[unit]:+,} {unit}" + (f", {diff['relative']:+.2%}" if diff.get("relative") else "") + ")"
    lines = [f"budget: asked {wanted}, got {have}{delta}"] + [f"  {note}" for note in record["notes"]]
    mix = record.get("mix")
    if mix is not None and mix["clusters_drawn"] > 1 and mix["clusters_at_clip"]:  # else the difference is chance
        big = mix["largest"]
        lines.append(f"mix: {mix['clusters_at_clip']:,} clusters reached their clip, so {mix['total_variation']:.1%} "
                     f"of the {mix['unit']} went to other clusters than the weights ask (most: cluster "
                     f"{big['cluster']}, asked {big['asked']:.1%}, got {big['got']:.1%})")
    return lines


def mix_record(law: dict[str, np.ndarray], stats: dict, *, balance: str) -> dict:
    """``statistics.budget.mix``: what the law's draw weights ask of each cluster against what the schedule got.

    ``law``: the columns of ``law.parquet`` (one row per stage and cluster); each stage asks each cluster for its
    draw probability (``weight``) times the stage's samples; with ``--balance tokens`` (and tokens counted) the
    weights ask for shares of the tokens: the asked samples times the cluster's mean sample length. The clip (and
    a token budget) make the realised mix differ: :func:`mixture_record`."""
    k = len(stats["cluster_samples"])
    asked = np.zeros(k)
    stage, cluster = np.asarray(law["stage"], np.int64), np.asarray(law["cluster"], np.int64)
    spans = stats.get("stages") or [{"samples": stats["samples"]}]
    first = int(stage.min()) if len(stage) else 0
    for s, span in enumerate(spans):
        mine = stage == first + s
        np.add.at(asked, cluster[mine], np.asarray(law["weight"], np.float64)[mine] * span["samples"])
    mean = stats.get("cluster_mean_tokens")
    if balance == "tokens" and mean is not None and stats.get("cluster_tokens") is not None:
        asked = asked * np.asarray([0.0 if m is None else m for m in mean], np.float64)
        return mixture_record(asked, ScheduleStats.from_json(stats), unit="tokens")
    return mixture_record(asked, ScheduleStats.from_json(stats), unit="samples")


def mixture_record(weights: np.ndarray, stats: ScheduleStats, *, unit: str) -> dict:
    """A drawn mixture against what its schedule got (``clusterclip mixtures``' ``statistics.realised``).

    ``weights``: the mixture's weight of every cluster (``[K]``, 0 for the clusters it does not draw); ``stats``:
    its schedule's statistics; ``unit``: ``"tokens"`` when the weights share out tokens (``--balance tokens``,
    ``--budget-tokens``), else ``"samples"``. The weights ask each cluster for its weight over their sum (no alpha in
    a mixture); a cluster that reached its clip gets less and the others share what it left, so the realised
    mixture is not the drawn one. Returns the clusters at their clip, the total variation distance between the
    asked and realised shares (half the sum of their differences: the share of the ``unit`` that went to other
    clusters than asked) and the cluster where they differ most."""
    asked = _shares(np.asarray(weights, np.float64))
    counts = stats.cluster_tokens if unit == "tokens" else stats.cluster_samples
    got = _shares(np.asarray([] if counts is None else counts, np.float64))
    n = max(len(asked), len(got))
    asked, got = np.pad(asked, (0, n - len(asked))), np.pad(got, (0, n - len(got)))
    diff = got - asked
    worst = int(np.argmax(np.abs(diff))) if n else 0
    return {"unit": unit, "clusters_at_clip": stats.clusters_exhausted,
            "clusters_drawn": int(np.count_nonzero(asked)),
            "total_variation": round(float(0.5 * np.abs(diff).sum()), 6),
            "largest": {"cluster": worst, "asked": round(float(asked[worst]), 6) if n else 0.0,
                        "got": round(float(got[worst]), 6) if n else 0.0}}


def _shares(values: np.ndarray) -> np.ndarray:
    total = values.sum()
    return values / total if total > 0 else np.zeros_like(values)


def format_mixtures(records: list[dict]) -> str:
    """The ``mixtures`` summary's line: clusters at the clip and the distance from the drawn weights, over mixtures."""
    if not records:
        return ""
    tv = np.asarray([r["total_variation"] for r in records])
    clip = [r["clusters_at_clip"] for r in records if r["clusters_at_clip"] is not None]
    drawn = max(r["clusters_drawn"] for r in records)
    at_clip = ""
    if clip:
        at_clip = (f"{min(clip):,}" + (f"-{max(clip):,}" if max(clip) != min(clip) else "")
                   + f" of {drawn:,} clusters reached their clip per mixture; ")
    spread = f"{tv.min():.1%}" + (f"-{tv.max():.1%} (median {np.median(tv):.1%})" if len(tv) > 1 else "")
    return (f"realised vs drawn weights: {at_clip}{spread} of the {records[0]['unit']} went to other clusters than "
            f"the weights asked (statistics.realised per mixture)")
