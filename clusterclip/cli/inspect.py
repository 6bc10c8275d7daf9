"""``clusterclip inspect``: list the token shards of a schedule and read samples back from them."""

from __future__ import annotations

import json

import click

from ..shards import FORMATS
from .common import echo_summary, step_command


@click.command("inspect")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--sample", "-s", "samples", type=int, multiple=True, metavar="I",
              help="Show position I of the order: doc_id, cluster, repeat and its tokens read back from "
                   "the shard files. Repeatable.")
@click.option("--decode", is_flag=True, help="Also decode the sample's tokens to text with the tokenizer "
                                             "recorded in OUT/manifest.json (or --tokenizer).")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default=None,
              help="Read the sample from this format only (default: every format written, and check they agree).")
@click.option("--shards", "show_shards", is_flag=True,
              help="List every shard (of --format, default the first): its first and last sample, where it cuts "
                   "a sample (--align-tokens/--pack), its look-ahead and padding tokens.")
@click.option("--tokenizer", default=None, metavar="SPEC",
              help="Tokenizer for --decode instead of the recorded one: a tokenizer.json, a HF tokenizer "
                   "directory or a hub name.")
@click.option("--max-tokens", type=int, default=64, show_default=True,
              help="Print at most this many token ids per sample (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@step_command
def command(out, samples, decode, fmt, show_shards, tokenizer, max_tokens, as_json):
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
