"""``clusterclip cluster``: spherical k-means over the embeddings of an ``embed`` directory."""

from __future__ import annotations

import click

from ..cluster.assignment import DEFAULT_CHUNK_ROWS
from ..cluster.kmeans import DEFAULT_INIT, DEFAULT_ITERS, DEVICES, INIT_POINTS_PER_CENTROID, INITS, POINTS_PER_CENTROID
from .common import echo_summary, engine_options, note, overwrite_option, step_command, wants_progress


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
    return line + f" -> {result.out} in {result.seconds:.1f}s"


@click.command(name="cluster")
@click.argument("emb", type=click.Path(file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(),
              help="Output directory (centroids.npy, assignments.parquet, clusters.parquet, manifest.json).")
@click.option("--k", "k", required=True, type=click.IntRange(min=1),
              help="Number of clusters (the paper: 2000 for its corpus; a few hundred to a few thousand documents "
                   "per cluster is typical).")
@click.option("--iters", type=click.IntRange(min=1), default=DEFAULT_ITERS, show_default=True,
              help="k-means iterations (the reference code uses 300; from a greedy k-means++ start spherical "
                   "k-means has converged to 0.01% by 10, see docs/PERFORMANCE.md).")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True,
              help="Seed of the training sample and of the centroid initialisation.")
@click.option("--max-train-points", type=click.IntRange(min=1), default=None,
              help=f"Train on at most this many documents, drawn uniformly at random [default: {POINTS_PER_CENTROID} "
                   f"x k]; every document is assigned in any case.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="auto: the GPU when faiss-gpu sees one, else the CPU.")
@click.option("--init", type=click.Choice(INITS), default=DEFAULT_INIT, show_default=True,
              help=f"Initial centroids: greedy-kmeans++ (scikit-learn's KMeans seeding, on a sample of "
                   f"{INIT_POINTS_PER_CENTROID} x k documents), random documents (the paper), or faiss's kmeans++ / "
                   f"afkmc2.")
@click.option("--levels", type=click.IntRange(1, 2), default=1, show_default=True,
              help="2: also cluster the centroids into --k2 groups (hierarchical k-means, Vo et al. 2024); "
                   "clusters.parquet gets a `parent` column.")
@click.option("--k2", type=click.IntRange(min=1), default=None,
              help="Second-level clusters with --levels 2 [default: about sqrt(k)].")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=DEFAULT_CHUNK_ROWS, show_default=True,
              help="Embedding rows held in memory at once while assigning (does not change the result).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for faiss [default: all cores]. Results are bit-identical for the same thread "
                   "count and CPU; pin it to reproduce a run from another machine of the same kind.")
@engine_options("the assignment pass (training stays here)")
@overwrite_option
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
    from ..cluster import ClusterSettings, cluster_embeddings

    settings = ClusterSettings.build(options)
    result = cluster_embeddings(emb, out, settings, overwrite=overwrite, progress=wants_progress(), log=note)
    echo_summary(format_summary(result))
