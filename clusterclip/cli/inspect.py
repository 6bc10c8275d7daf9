"""``clusterclip inspect``: list the token shards of a schedule and read samples back from them."""

from __future__ import annotations

import json

import click

from ..inspect_shards import InspectSettings
from .common import echo_summary, step_command
from .options import SettingsCommand, build, setting_options


@click.command("inspect", cls=SettingsCommand)
@click.argument("out", type=click.Path(file_okay=False))
@setting_options(InspectSettings)
@step_command
def command(out, **options):
    """Show the shards in OUT (a `clusterclip schedule` output) and the samples asked for.

    \b
      clusterclip inspect OUT                       shards per format: files, tokens, samples
      clusterclip inspect OUT --sample 0 --decode   the first training sample, as ids and text
      clusterclip inspect OUT -s 5 --format mds     sample 5 read from the MDS shards only
      clusterclip inspect OUT --shards              where each shard begins and ends in the order
    """
    from ..artifacts.manifest import describe
    from ..inspect_shards import (
        format_sample,
        format_shard_table,
        format_summary,
        sample_report,
        shard_table,
        summarize,
    )
    from ..schedule.directory import ScheduleDir

    settings = build(InspectSettings, options)
    samples, decode, fmt, show_shards = settings.samples, settings.decode, settings.format, settings.shards
    tokenizer, max_tokens, as_json = settings.tokenizer, settings.max_tokens, settings.json
    sd = ScheduleDir(out)  # refuses another step's directory, saying what it is
    if sd.dry_run:  # the order only: samples without tokens
        reports = [sample_report(out, i) for i in samples]
        if as_json:
            click.echo(json.dumps({"summary": {"out": str(out), "dry_run": True, "n_samples": sd.n_samples},
                                   "samples": reports}, indent=2, ensure_ascii=False))
            return
        echo_summary(f"{out}: {describe(sd.manifest)[2:]}")
        for r in reports:
            for line in format_sample(r, max_tokens):
                echo_summary(line)
        return
    summary = summarize(out)
    table = shard_table(out, fmt) if show_shards else None
    reports = [sample_report(out, i, fmt=fmt, decode=decode, tokenizer=tokenizer) for i in samples]
    if as_json:
        data = {"summary": summary, "samples": reports}
        if table is not None:
            data["shards"] = table
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for line in format_summary(summary):
        echo_summary(line)
    for line in format_shard_table(table or []):
        echo_summary(line)
    for r in reports:
        for line in format_sample(r, max_tokens):
            echo_summary(line)
