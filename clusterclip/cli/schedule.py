"""``clusterclip schedule``: ClusterClip order over the clusters, then token shards in that order."""

from __future__ import annotations

import click

from ..schedule.settings import ScheduleSettings
from .common import echo_summary, note, step_command, wants_progress
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
    from ..schedule import format_statistics, schedule_corpus

    settings = build(ScheduleSettings, options)
    result = schedule_corpus(emb, cl, out, settings, overwrite=overwrite, progress=wants_progress(), log=note)
    if result.already_done:
        echo_summary(f"schedule: {out} is already done with these inputs and settings (nothing to do)")
        return
    stats = result.statistics
    click.echo(format_statistics(stats))
    for warning in stats.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    what = "order only (dry run)" if settings.dry_run else f"shards: {', '.join(settings.formats)}"
    echo_summary(f"schedule: {stats['samples']:,} samples from {stats['unique_docs_used']:,} documents, {what} "
                 f"-> {out} in {result.seconds:.1f}s")
