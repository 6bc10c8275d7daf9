"""The cluster table as terminal text (what ``clusterclip clusters`` prints)."""

from __future__ import annotations

import textwrap

from .table import ClusterRow, ClusterTable, Example

TABLE_KEYWORDS = 6


def format_table(table: ClusterTable) -> list[str]:
    """One line per cluster: id, documents, share, mean similarity, (with a schedule) its samples and
    tokens of the cluster, and (with texts) keywords."""
    sched = table.schedule_dir is not None
    tokens = table.schedule_tokens is not None
    head = f"{'cluster':>7}  {'docs':>9}  {'share':>6}  {'mean sim':>8}"
    if sched:
        head += f"  {'samples':>9}"
    if tokens:
        head += f"  {'tokens':>12}  {'tok share':>9}  {'tok/sample':>10}"
    lines = [head + ("  keywords" if table.embed_dir else "")]
    for r in table.rows:
        sim = "-" if r.mean_similarity is None else f"{r.mean_similarity:.4f}"
        line = f"{r.cluster:>7}  {r.size:>9,}  {100 * r.share:>5.1f}%  {sim:>8}"
        if sched:
            line += f"  {r.samples:>9,}"
        if tokens:
            mean = "-" if r.mean_tokens is None else f"{r.mean_tokens:.1f}"
            line += f"  {r.tokens:>12,}  {100 * (r.token_share or 0.0):>8.1f}%  {mean:>10}"
        if table.embed_dir:
            line += "  " + ", ".join(r.keywords[:TABLE_KEYWORDS])
        lines.append(line.rstrip())
    empty = sum(r.size == 0 for r in table.rows)
    lines.append(f"{len(table.rows):,} of {table.k:,} clusters, {table.n_docs:,} documents"
                 + (f", {empty} empty" if empty else "")
                 + (f"; keywords from up to {table.sample_docs_per_cluster} sampled documents per cluster"
                    if table.embed_dir else ""))
    if sched:
        lines.append(f"schedule {table.schedule_dir}: {table.schedule_samples:,} samples"
                     + (f", {table.schedule_tokens:,} tokens (tok/sample: mean sample length, delimiters included)"
                        if tokens else "; it counted no tokens (a dry run without --tokenizer)"))
    return lines


def format_cluster(row: ClusterRow, n_docs: int, width: int = 100) -> list[str]:
    """One cluster in full: numbers, keywords, the documents nearest the centroid and at the edge."""
    sim = "-" if row.mean_similarity is None else f"{row.mean_similarity:.4f}"
    lines = [f"cluster {row.cluster}: {row.size:,} documents ({100 * row.share:.2f}% of {n_docs:,}), "
             f"mean similarity {sim}" + (f", group {row.parent}" if row.parent is not None else "")]
    if row.samples is not None:
        lines.append(f"in the schedule: {row.samples:,} samples"
                     + (f", {row.tokens:,} tokens ({100 * row.token_share:.2f}% of its tokens)"
                        if row.tokens is not None and row.token_share is not None else "")
                     + (f", {row.mean_tokens:.1f} tokens per sample" if row.mean_tokens is not None else ""))
    lines.append(f"keywords (TF-IDF over {row.keyword_docs} sampled documents): "
                 + (", ".join(row.keywords) if row.keywords else "-"))
    for title, examples in (("nearest the centroid", row.nearest), ("at the edge", row.edge)):
        lines.append(f"{title}:")
        if not examples:
            lines.append("  -")
        for i, e in enumerate(examples, 1):
            lines.append(f"  {i}. {_origin(e)}")
            lines += textwrap.wrap(e.excerpt, width=width, initial_indent="     ", subsequent_indent="     ")
    return lines


def _origin(e: Example) -> str:
    who = f"{e.user_id} · " if e.user_id is not None else ""
    return f"{who}{e.source} row {e.row} · doc {e.doc_id} · similarity {e.similarity:.3f}"
