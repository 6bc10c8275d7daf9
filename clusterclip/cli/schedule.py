"""``clusterclip schedule``: ClusterClip order over the clusters, then token shards in that order."""

from __future__ import annotations

import click

from ..schedule.settings import ScheduleSettings
from .common import note, run_and_report, step_command, wants_progress
from .options import OutputOptions, SettingsCommand, build, setting_options


@click.command(name="schedule", cls=SettingsCommand)
@click.argument("emb", type=click.Path(file_okay=False))
@click.argument("cl", type=click.Path(file_okay=False))
@setting_options(ScheduleSettings, OutputOptions, help={"out": "Output directory (order, shards, manifest)."})
@step_command
def command(emb, cl, out, overwrite, **options):
    """Order the documents of EMB by the clusters of CL and write token shards in that order.

    \b
    Example:
      clusterclip schedule emb/ cl/ --out sched/ --tokenizer tokenizer.json \\
          --epochs 2 --max-repeats 4 --format bin,parquet

    The shards hold each sample's tokens (with --bos-token before and EOS after), in exactly
    the order of order.parquet: a trainer that reads them sequentially trains on the
    ClusterClip order. README, "Reading the shards from a trainer", gives the flags per
    trainer. Texts are read back from the corpus files, whose content is checked against
    what embed read.
    """
    from ..schedule.step import ScheduleStep

    step = ScheduleStep.open(emb, cl, build(ScheduleSettings, options), progress=wants_progress(), log=note)
    run_and_report(step, out, overwrite)
