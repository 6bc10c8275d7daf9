"""``clusterclip cluster``: spherical k-means over the embeddings of an ``embed`` directory."""

from __future__ import annotations

import click

from ..cluster.settings import ClusterSettings
from .common import note, run_and_report, step_command, wants_progress
from .options import OutputOptions, SettingsCommand, build, setting_options


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
    from ..cluster.step import ClusterStep

    step = ClusterStep.open(emb, build(ClusterSettings, options), progress=wants_progress(), log=note)
    run_and_report(step, out, overwrite)
