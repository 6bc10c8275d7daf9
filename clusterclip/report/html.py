"""The report page: one self-contained HTML file (figures inlined as PNG data URIs, no scripts, no network).

Every value that comes from the corpus or the artifacts is HTML-escaped. Table cells carry a
class naming what they hold (``size``, ``share``, ``similarity``, ``keywords``, ...) and each
row the id ``cluster-<id>``, so the page can be checked and linked to.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html import escape
from pathlib import PurePath

from .table import ClusterRow, Example

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1400px;
       padding: 0 1rem; color: #1d1d1f; background: #fff; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2.2rem; }
.summary { color: #444; } .summary li { margin: .1rem 0; }
.note { color: #555; font-size: .92rem; } .warning { color: #a40000; font-weight: 600; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9rem; }
nav a { margin-right: 1rem; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; min-width: 900px; font-size: .86rem; table-layout: fixed; }
th, td { border-bottom: 1px solid #e5e5e5; padding: .35rem .45rem; vertical-align: top; text-align: left;
         overflow-wrap: anywhere; }
col.n { width: 4.8rem; } col.keywords { width: 15%; }
th { background: #f6f6f6; position: sticky; top: 0; overflow-wrap: normal; font-size: .8rem; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.keywords { font-weight: 600; }
ol.docs { margin: 0; padding-left: 1.1rem; } ol.docs li { margin-bottom: .3rem; }
.meta { color: #666; font-size: .8rem; display: block; }
code { background: #f3f3f3; padding: 0 .2rem; }
"""


@dataclass
class Figure:
    name: str  # file name under figures/
    png: bytes
    alt: str
    caption: str


@dataclass
class Section:
    anchor: str
    heading: str
    text: list[str]  # paragraphs (HTML-escaped here)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class ScheduleColumns:
    """Per-cluster schedule numbers shown in the table when a schedule is given."""

    samples: dict[int, int]
    share: dict[int, float]
    exit_position: dict[int, int]  # -1: did not leave the pool
    total: int
    tokens: dict[int, int] | None = None  # tokens of the cluster's samples (when the schedule counted tokens)
    token_share: dict[int, float] | None = None
    planned: dict[int, float] | None = None  # expected samples under the schedule's law (None: no plan)
    why: dict[int, str] | None = None  # why the samples differ from what the weights ask (plan.explain)
    second_use: dict[int, int] | None = None  # position of the cluster's first second use of a document, -1: none


@dataclass
class SimpleTable:
    """A plain table of the page (e.g. the groups of ``--group-by``): ``columns`` are ``(css class, heading,
    title)``; each row's cells are ``(text, value)`` in that order (``value``: the cell's ``data-value``)."""

    anchor: str
    heading: str
    note: str
    columns: list[tuple[str, str, str]]
    rows: list[list[tuple[str, str]]]

    def render(self) -> str:
        out = [f'<section id="{escape(self.anchor)}"><h2>{escape(self.heading)}</h2>',
               f'<p class="note">{escape(self.note)}</p>', '<div class="table-wrap"><table class="simple">',
               "<thead><tr>" + "".join(f'<th title="{escape(t)}">{escape(h)}</th>' for _, h, t in self.columns)
               + "</tr></thead>", "<tbody>"]
        for row in self.rows:
            cells = [f'<td class="{"" if i == 0 else "num "}{escape(css)}" data-value="{escape(value)}">{escape(text)}</td>'
                     for i, ((css, _, _), (text, value)) in enumerate(zip(self.columns, row))]
            out.append("<tr>" + "".join(cells) + "</tr>")
        out += ["</tbody>", "</table></div>", "</section>"]
        return "\n".join(out)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_page(*, title: str, summary: list[str], warnings: list[str], sections: list[Section],
                rows: list[ClusterRow], table_note: str, schedule: ScheduleColumns | None,
                footer: str, tables: list[SimpleTable] | None = None) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
           f"<h1>{escape(title)}</h1>", '<ul class="summary">']
    out += [f"<li>{escape(line)}</li>" for line in summary]
    out.append("</ul>")
    out += [f'<p class="warning">{escape(w)}</p>' for w in warnings]
    tables = tables or []
    links = [(s.anchor, s.heading) for s in sections] + [(t.anchor, t.heading) for t in tables] \
        + [("clusters", "Clusters")]
    out.append("<nav>" + "".join(f'<a href="#{a}">{escape(h)}</a>' for a, h in links) + "</nav>")
    for s in sections:
        out.append(f'<section id="{escape(s.anchor)}"><h2>{escape(s.heading)}</h2>')
        out += [f'<p class="note">{escape(p)}</p>' for p in s.text]
        for f in s.figures:
            out.append(f'<figure id="fig-{escape(f.name)}"><img src="{data_uri(f.png)}" alt="{escape(f.alt)}" '
                       f'data-file="figures/{escape(f.name)}.png">'
                       f"<figcaption>{escape(f.caption)}</figcaption></figure>")
        out.append("</section>")
    out += [t.render() for t in tables]
    out.append('<section id="clusters"><h2>Clusters</h2>')
    out.append(f'<p class="note">{escape(table_note)}</p>')
    out.append(_table(rows, schedule))
    out.append("</section>")
    out.append(f'<footer class="note"><p>{escape(footer)}</p></footer>')
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def _table(rows: list[ClusterRow], schedule: ScheduleColumns | None) -> str:
    head = [("cluster", "cluster id (row of centroids.npy)"), ("docs", "documents in the cluster"),
            ("share", "share of all documents"), ("mean sim.", "mean cosine similarity to the centroid")]
    if schedule is not None:
        head += [("samples", "samples of the cluster in the schedule"),
                 ("share of schedule", "share of the schedule's samples")]
        if schedule.planned is not None:
            head += [("planned", "expected samples under the schedule's law (its weights, clips and budgets)"),
                     ("why", "why the samples differ from what the weights ask: clip, token budget or chance")]
        head += [("left pool at", "position of the cluster's last sample, if it left the pool (clip or budget)")]
        if schedule.second_use is not None:
            head += [("second uses from", "position of the cluster's first sample that reuses a document")]
        if schedule.tokens is not None:
            head += [("tokens", "tokens of the cluster's samples in the schedule"),
                     ("share of tokens", "share of the schedule's tokens")]
    head += [("keywords", "top TF-IDF terms of a sample of its documents"),
             ("nearest the centroid", "the documents most similar to the centroid"),
             ("at the edge", "the documents least similar to the centroid")]
    n_numbers = len(head) - 3
    cols = '<col class="n">' * n_numbers + '<col class="keywords"><col><col>'
    out = ['<div class="table-wrap"><table>', f"<colgroup>{cols}</colgroup>",
           "<thead><tr>" + "".join(f'<th title="{escape(t)}">{escape(h)}</th>' for h, t in head) + "</tr></thead>", "<tbody>"]
    for r in rows:
        sim = "–" if r.mean_similarity is None else f"{r.mean_similarity:.4f}"
        cells = [
            f'<td class="num cluster">{r.cluster}</td>',
            f'<td class="num size" data-value="{r.size}">{r.size:,}</td>',
            f'<td class="num share" data-value="{r.share!r}">{100 * r.share:.2f}%</td>',
            f'<td class="num similarity" data-value="{"" if r.mean_similarity is None else repr(r.mean_similarity)}">{sim}</td>',
        ]
        if schedule is not None:
            n = schedule.samples.get(r.cluster, 0)
            share = schedule.share.get(r.cluster, 0.0)
            pos = schedule.exit_position.get(r.cluster, -1)
            left = "–" if pos < 0 else f"{pos:,} ({100 * pos / max(schedule.total, 1):.0f}%)"
            cells += [f'<td class="num samples" data-value="{n}">{n:,}</td>',
                      f'<td class="num schedule-share" data-value="{share!r}">{100 * share:.2f}%</td>']
            if schedule.planned is not None and schedule.why is not None:
                planned = schedule.planned.get(r.cluster, 0.0)
                cells += [f'<td class="num planned" data-value="{planned!r}">{planned:,.1f}</td>',
                          f'<td class="num why">{escape(schedule.why.get(r.cluster, ""))}</td>']
            cells.append(f'<td class="num left" data-value="{pos}">{left}</td>')
            if schedule.second_use is not None:
                again = schedule.second_use.get(r.cluster, -1)
                cells.append(f'<td class="num second-use" data-value="{again}">{"–" if again < 0 else f"{again:,}"}</td>')
            if schedule.tokens is not None and schedule.token_share is not None:
                t = schedule.tokens.get(r.cluster, 0)
                t_share = schedule.token_share.get(r.cluster, 0.0)
                cells += [f'<td class="num tokens" data-value="{t}">{t:,}</td>',
                          f'<td class="num token-share" data-value="{t_share!r}">{100 * t_share:.2f}%</td>']
        keywords = ", ".join(r.keywords) if r.keywords else "–"
        cells.append(f'<td class="keywords" title="from {r.keyword_docs} sampled documents">{escape(keywords)}</td>')
        cells.append(f'<td class="nearest">{_docs(r.nearest)}</td>')
        cells.append(f'<td class="edge">{_docs(r.edge)}</td>')
        out.append(f'<tr id="cluster-{r.cluster}">' + "".join(cells) + "</tr>")
    out += ["</tbody>", "</table></div>"]
    return "\n".join(out)


def _docs(examples: list[Example]) -> str:
    if not examples:
        return "–"
    items = []
    for e in examples:
        where = f"{PurePath(e.source).name} row {e.row}"
        who = f"{e.user_id} · " if e.user_id is not None else ""
        items.append(f'<li><span class="meta" title="{escape(e.source)}">{escape(who + where)} · '
                     f"doc {e.doc_id} · similarity {e.similarity:.3f}</span>{escape(e.excerpt)}</li>")
    return '<ol class="docs">' + "".join(items) + "</ol>"
