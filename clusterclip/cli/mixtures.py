"""``clusterclip mixtures``: N schedules from one clustering, each with Dirichlet-drawn cluster weights."""

from __future__ import annotations

import click

from ..schedule.settings import MixturesSettings
from .common import note, run_and_report, step_command, wants_progress
from .options import OutputOptions, SettingsCommand, build, setting_options


@click.command(name="mixtures", cls=SettingsCommand)
@click.argument("emb", type=click.Path(file_okay=False))
@click.argument("cl", type=click.Path(file_okay=False))
@setting_options(MixturesSettings, OutputOptions, help={"out": "Output directory (weights + one schedule each)."})
@step_command
def command(emb, cl, out, overwrite, **options):
    """Draw N cluster-weight vectors from a Dirichlet and plan one schedule (order only) for each.

    \b
    Example:
      clusterclip mixtures emb/ cl/ --out mix/ --dirichlet 0.5 --n 8 --samples 1000000

    OUT/weights.parquet holds every mixture's weights (mixture, cluster, weight); OUT/mixture-III
    is a `schedule --dry-run --weights OUT/weights/mixture-III.csv` output. Train a small proxy
    model on each and pick the best mixture (RegMix / CLIMB style); then write its shards with
    `clusterclip schedule ... --weights OUT/weights/mixture-III.csv`. OUT is one output (one manifest,
    `clusterclip verify OUT` checks every file); a rerun with another --n and --overwrite replaces it.
    """
    from ..schedule.mixtures import MixturesStep

    step = MixturesStep.open(emb, cl, build(MixturesSettings, options), progress=wants_progress(), log=note)
    run_and_report(step, out, overwrite)
