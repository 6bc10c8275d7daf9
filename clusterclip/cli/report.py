"""``clusterclip report``: an HTML page of the clusters and of what a schedule does with them."""

from __future__ import annotations

import time

import click

from ..report.build import DEFAULT_MAX_TABLE_CLUSTERS, MAP_METHODS
from ..report.table import DEFAULT_MAX_SAMPLE_DOCS, DEFAULT_SAMPLE_DOCS
from .common import echo_summary, overwrite_option, step_command


@click.command("report")
@click.argument("emb", type=click.Path(file_okay=False))
@click.argument("cl", type=click.Path(file_okay=False))
@click.argument("sched", type=click.Path(file_okay=False), required=False)
@click.option("--out", "-o", required=True, type=click.Path(),
              help="Output directory: index.html (self-contained), figures/*.png, report.json, manifest.json.")
@click.option("--sample-docs", type=click.IntRange(min=1), default=DEFAULT_SAMPLE_DOCS, show_default=True,
              help="Keywords come from a seeded random sample of at most this many documents per cluster.")
@click.option("--max-sample-docs", type=click.IntRange(min=1), default=DEFAULT_MAX_SAMPLE_DOCS, show_default=True,
              help="...and at most this many documents in all (fewer per cluster when K is large), so the "
                   "report's time and memory stay bounded whatever the corpus size.")
@click.option("--max-table-clusters", type=click.IntRange(min=1), default=DEFAULT_MAX_TABLE_CLUSTERS, show_default=True,
              help="The table lists at most this many clusters, the largest.")
@click.option("--max-repeats", type=click.IntRange(min=1), default=4, show_default=True,
              help="Without SCHED: the clip of the expected clusterclip mix drawn for one epoch "
                   "(with a clusterclip SCHED its own settings are used).")
@click.option("--map", "map_method", type=click.Choice(MAP_METHODS), default="auto", show_default=True,
              help="2-D map of the centroids: auto is UMAP when the `umap` package is installed, else PCA.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True,
              help="Seed of the keyword sample (and of UMAP).")
@overwrite_option
@step_command
def command(emb, cl, sched, out, sample_docs, max_sample_docs, max_table_clusters, max_repeats, map_method, seed,
            overwrite):
    """Write an HTML report of EMB + CL (and of the schedule SCHED, when given) into --out.

    \b
    Example:
      clusterclip report work/emb work/cl work/sched --out work/report
      # then open work/report/index.html in a browser (no network needed)

    \b
    The page shows:
      - cluster sizes and the share each cluster gets under the random, uniform and
        clusterclip samplers (and under SCHED, counted from its order.parquet);
      - with SCHED: each cluster's share over training, how often documents repeat,
        and which clusters left the pool and when;
      - a 2-D map of the centroids (PCA, or UMAP when installed), sized by cluster size;
      - a table of the clusters: size, mean similarity, keywords (TF-IDF of a sample of
        each cluster against the others) and the documents nearest the centroid and at
        the edge, with their id, file and row.

    Texts are read back from the corpus files recorded by `embed`. An --out that holds
    anything but an earlier report is refused unless --overwrite.
    """
    from ..report import build_report

    started = time.perf_counter()
    index = build_report(emb, cl, sched, out, overwrite=overwrite, sample_docs=sample_docs,
                         max_sample_docs=max_sample_docs, max_table_clusters=max_table_clusters,
                         max_repeats=max_repeats, seed=seed, map_method=map_method)
    echo_summary(f"report: {index} in {time.perf_counter() - started:.1f}s; open {index.resolve().as_uri()} in a browser")
