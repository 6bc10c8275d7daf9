"""``clusterclip cluster``: spherical k-means over the embeddings of an ``embed`` directory."""

from __future__ import annotations

import click

from ..cluster.settings import ClusterSettings
from .common import echo_summary, note, step_command, wants_progress
from .options import OutputOptions, SettingsCommand, build, setting_options


def format_summary(result) -> str:
    """One line: documents, clusters, mean similarity, sizes, empty clusters."""
    if result.already_done:
        return f"cluster: {result.out} is already done with these inputs and settings (nothing to do)"
    s = result.statistics
    sz = s["sizes"]
    line = (f"cluster: {s['n_docs']:,} documents -> {s['k']} clusters, mean similarity {s['mean_similarity']:.4f}, "
            f"sizes {sz['min']}/{sz['median']:g}/{sz['max']} (min/median/max, Gini {sz['gini']:.2f}), "
            f"{s['empty_clusters']} empty")
    if "level2" in s:
        line += f", level 2: {s['level2']['k']} groups"
    if "assign_only" in s:
        line += f", centroids of {s['assign_only']['from']} (not trained)"
    return line + f" -> {result.out} in {result.seconds:.1f}s"


@click.command(name="cluster", cls=SettingsCommand)
@click.argument("emb", type=click.Path(file_okay=False))
@setting_options(ClusterSettings, OutputOptions,
                 help={"out": "Output directory (centroids.npy, assignments.parquet, clusters.parquet, manifest.json)."})
@step_command
def command(emb, out, overwrite, **options):
    """Cluster the documents of EMB (a `clusterclip embed` directory) with spherical k-means.

    \b
    Example:
      clusterclip cluster emb/ --out cl/ --k 2000

    Trains on a random sample of the embeddings (cosine similarity, unit-norm centroids, one
    run, as in the ClusterClip paper, but seeded with greedy k-means++ unless --init random),
    then assigns every document to its most similar centroid. Every embedding read is
    checked against the sha256 that embed recorded. Same embeddings, settings and seed give
    the same files. Rerunning a finished command does nothing; rerunning an interrupted one
    resumes it (the trained centroids are kept).
    """
    from ..cluster import cluster_embeddings

    settings = build(ClusterSettings, options)
    result = cluster_embeddings(emb, out, settings, overwrite=overwrite, progress=wants_progress(), log=note)
    echo_summary(format_summary(result))
