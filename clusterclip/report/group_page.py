"""The report's ``--group-by`` parts: a table of the groups and, with a schedule, their figures over training.

Counts per group come from the order (a sample counts for its document's group: :mod:`.timeline`); what the law
asks of and expects for a group is its clusters' share spread evenly over their documents
(:meth:`.groups.Groups.spread`).
"""

from __future__ import annotations

import numpy as np

from . import training
from .certificate import Counted
from .groups import Groups
from .html import Figure, SimpleTable
from .mix import shares_of

#: the group table lists at most this many groups (the largest)
MAX_GROUP_ROWS = 1000


def group_table(groups: Groups, counted: Counted | None, labels: np.ndarray | None, sizes: np.ndarray) -> SimpleTable:
    """One row per group (largest first): documents, their share, the cluster holding most of them and, with a
    schedule, its samples and tokens against what the law asks and expects."""
    assert labels is not None
    docs = groups.documents()
    matrix = groups.matrix(labels, sizes)
    counts = (matrix.multiply(np.asarray(sizes, np.float64)[:, None])).tocsc()
    main = np.asarray(counts.argmax(axis=0)).ravel()
    order = np.lexsort((np.arange(groups.n), -docs))[:MAX_GROUP_ROWS]
    columns = [("group", groups.column, f"value of {groups.column}"), ("docs", "docs", "documents in the group"),
               ("share", "share", "share of all documents"),
               ("main", "main cluster", "the cluster holding most of the group's documents (its share of them)")]
    numbers = _schedule_numbers(groups, counted, matrix)
    if numbers:
        columns += [(name, head, title) for name, (head, title, _) in numbers.items()]
    rows = []
    for g in order.tolist():
        held = float(counts[main[g], g]) / max(int(docs[g]), 1)
        row = [(groups.names[g], groups.names[g]), (f"{int(docs[g]):,}", str(int(docs[g]))),
               (f"{docs[g] / max(docs.sum(), 1):.2%}", repr(float(docs[g] / max(docs.sum(), 1)))),
               (f"{int(main[g])} ({held:.0%})", str(int(main[g])))]
        for _, (_, _, values) in numbers.items():
            value = values[g]
            text = f"{value:.2%}" if isinstance(value, float) else f"{value:,}"
            row.append((text, repr(value)))
        rows.append(row)
    note = (f"Documents grouped by {groups.column}, largest first"
            + (f" (the {len(order):,} largest of {groups.n:,})" if len(order) < groups.n else "")
            + ". A sample counts for its document's group; asked and expected spread each cluster's share evenly over "
              "its documents.")
    return SimpleTable("group-table", f"Groups by {groups.column}", note, columns, rows)


def _schedule_numbers(groups: Groups, counted: Counted | None, matrix) -> dict[str, tuple[str, str, list]]:
    if counted is None:
        return {}
    tl = counted.timeline
    assert tl.group_part_samples is not None
    samples = tl.group_part_samples.sum(axis=0)
    out: dict[str, tuple[str, str, list]] = {
        "samples": ("samples", "samples of the group's documents in the schedule", [int(x) for x in samples]),
        "schedule-share": ("share of samples", "share of the schedule's samples",
                           [float(x) for x in shares_of(samples)])}
    if counted.plan is not None:
        asked = groups.spread(counted.plan.asked(), matrix)
        expected = shares_of(groups.spread(counted.plan.expected_samples, matrix))
        out["asked"] = ("asked", "share of the samples the weights ask for", [float(x) for x in asked])
        out["expected"] = ("expected", "share of the samples the law expects (with its clips)",
                           [float(x) for x in expected])
    if tl.group_part_tokens is not None:
        tokens = tl.group_part_tokens.sum(axis=0)
        out["tokens"] = ("tokens", "tokens of the group's samples", [int(x) for x in tokens])
        out["token-share"] = ("share of tokens", "share of the schedule's tokens", [float(x) for x in shares_of(tokens)])
    return out


def group_figures(groups: Groups, counted: Counted, labels: np.ndarray | None, sizes: np.ndarray
                  ) -> tuple[list[Figure], dict]:
    """The groups over training: their share of each part (samples; tokens, x in tokens), their cumulative tokens
    (planned dashed) and asked against got."""
    assert labels is not None
    tl, plan = counted.timeline, counted.plan
    assert tl.group_part_samples is not None
    rows = training.Rows(groups.column, groups.names)
    matrix = groups.matrix(labels, sizes)
    figs, plotted = [], {}
    png, plotted["group_balance_over_time"] = training.balance_over_time(
        tl.group_part_samples, tl.sample_edges, rows, unit="samples",
        title=f"Share of each {groups.column} in each part of the schedule")
    figs.append(Figure("group_balance_over_time", png, f"share of each {groups.column} over training",
                       f"Each {groups.column}'s share of the samples in each of {tl.parts} parts of the schedule."))
    if tl.group_token_part_tokens is not None and tl.token_edges is not None:
        planned = None
        if plan is not None and plan.mean_tokens is not None and tl.samples_at_token_edges is not None:
            planned = groups.spread(plan.expected_at(tl.samples_at_token_edges) * plan.mean_tokens, matrix)
        png, plotted["group_cumulative_tokens"] = training.cumulative_tokens(tl.group_token_part_tokens,
                                                                             tl.token_edges, rows, planned)
        figs.append(Figure("group_cumulative_tokens", png, f"tokens per {groups.column} over training",
                           f"Cumulative tokens of each {groups.column} against the position in tokens; dashed: "
                           "planned."))
    if plan is not None:
        asked = groups.spread(plan.asked(), matrix)
        expected = shares_of(groups.spread(plan.expected_samples, matrix))
        realised = shares_of(tl.group_part_samples.sum(axis=0))
        png, plotted["group_target_vs_realised"] = training.target_vs_realised(
            asked, expected, realised, ["group"] * groups.n, rows, unit="samples")
        figs.append(Figure("group_target_vs_realised", png, f"asked and got per {groups.column}",
                           f"Each {groups.column}'s share of the samples: asked by the weights (x) against got."))
    return figs, plotted
