"""``clusterclip holdout``: the held-out documents of every cluster, for scoring proxy models."""

from __future__ import annotations

import click

from ..proxy.settings import HoldoutSettings
from .common import note, run_and_report, step_command, wants_progress
from .options import OutputOptions, SettingsCommand, build, setting_options


@click.command(name="holdout", cls=SettingsCommand)
@click.argument("emb", type=click.Path(file_okay=False))
@click.argument("cl", type=click.Path(file_okay=False))
@setting_options(HoldoutSettings, OutputOptions, help={"out": "Output directory (heldout.parquet, manifest.json)."})
@step_command
def command(emb, cl, out, overwrite, **options):
    """Hold out documents of each cluster of CL (a `clusterclip cluster` directory of EMB).

    \b
    Example:
      clusterclip holdout emb/ cl/ --out eval/ --per-cluster 8
      clusterclip schedule emb/ cl/ --out sched/ --tokenizer tok.json --exclude eval/

    OUT/heldout.parquet lists the doc_id and cluster of every held-out document: drawn per
    cluster (seeded; a cluster always keeps a document to train on), never trained on by a
    schedule written with --exclude OUT, and scored by `clusterclip proxy --eval OUT`, each
    document on its own. --target FILE adds texts you care about (CLIMB's target domain),
    scored as one more group.
    """
    from ..proxy.holdout_step import HoldoutStep

    step = HoldoutStep.open(emb, cl, build(HoldoutSettings, options), progress=wants_progress(), log=note)
    run_and_report(step, out, overwrite)
