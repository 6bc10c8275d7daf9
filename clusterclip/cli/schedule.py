"""``clusterclip schedule``: ClusterClip order over the clusters, then token shards in that order."""

from __future__ import annotations

import click

from ..schedule.sampling import SAMPLERS
from ..schedule.settings import DEFAULT_MAX_REPEATS, DEFAULT_SHARD_TOKENS
from ..shards import formats_help
from ..tokenization import CONVENTIONS
from .common import echo_summary, engine_options, note, overwrite_option, rehash_option, step_command, wants_progress


def _formats(ctx, param, value):
    """``bin,parquet`` -> ``("bin", "parquet")``; checked by the settings."""
    return tuple(v.strip() for v in str(value).split(",") if v.strip())


@click.command(name="schedule")
@click.argument("emb", type=click.Path(file_okay=False))
@click.argument("cl", type=click.Path(file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory (order, shards, manifest).")
@click.option("--tokenizer", type=str, default=None,
              help="Required unless --dry-run: a tokenizer.json file, a local Hugging Face tokenizer directory, "
                   "or a hub name.")
@click.option("--sampler", type=click.Choice(SAMPLERS), default="clusterclip", show_default=True,
              help="clusterclip: clusters uniformly + repetition clip; uniform: no clip; random: per-epoch shuffle.")
@click.option("--max-repeats", type=click.IntRange(min=1), default=DEFAULT_MAX_REPEATS, show_default=True,
              help="ClusterClip's clip: no document is used more than this many times.")
@click.option("--alpha", type=click.FloatRange(-16, 16), default=0.0, show_default=True,
              help="Cluster weights ∝ size**alpha: 0 = uniform over clusters (the paper), 1 = by size.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Budget: EPOCHS × number of documents samples (default: 1 epoch).")
@click.option("--samples", type=click.IntRange(min=1), default=None, help="Budget: exactly this many samples.")
@click.option("--tokens", type=click.IntRange(min=1), default=None,
              help="Budget: stop at the first sample that brings the total to this many tokens (delimiters "
                   "included).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of every random choice.")
@click.option("--eos-token", type=str, default=None, metavar="TOKEN|none",
              help="Special token appended to every sample (a token or an id; default: the tokenizer's EOS); "
                   "'none' appends nothing.")
@click.option("--bos-token", type=str, default=None, metavar="TOKEN",
              help="Special token prepended to every sample (a token or an id; default: none).")
@click.option("--convention", type=click.Choice(list(CONVENTIONS)), default=None,
              help="The delimiters a trainer expects, instead of --bos-token/--eos-token: llm.c and "
                   "modded-nanogpt put the EOS token BEFORE each document and nothing after; the others "
                   "append EOS (the default).")
@click.option("--allow-ordinary-delimiter", is_flag=True,
              help="Accept an ordinary (non-special) token as --bos-token/--eos-token, although it also occurs "
                   "inside documents.")
@click.option("--align-tokens", type=click.IntRange(min=1), default=None, metavar="W",
              help="Token streams (bin, raw, datatrove): every shard holds a multiple of W tokens plus one "
                   "look-ahead token (the next shard's first), so a loader reading W = B*T tokens per step drops "
                   "nothing; samples may span shards; the last shard is padded with EOS (or BOS).")
@click.option("--pack", type=click.IntRange(min=1), default=None, metavar="L",
              help="Rows of exactly L tokens cut from the ordered stream (parquet, mds; token streams are cut at "
                   "whole rows), with each row's document boundaries (cu_seqlens, positions, doc_ids); the last "
                   "row is padded with EOS (or BOS).")
@click.option("--format", "formats", callback=_formats, default="bin", show_default=True,
              help="Shard formats, comma-separated. " + formats_help() + ".")
@click.option("--shard-tokens", type=click.IntRange(min=1), default=DEFAULT_SHARD_TOKENS, show_default=True,
              help="At most this many tokens per shard file.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Tokenizer workers [default: every core]; the token store is the same bytes for any number.")
@click.option("--dry-run", is_flag=True, help="Write the order and statistics only; no tokenizing, no shards.")
@click.option("--allow-partial", is_flag=True,
              help="When the clip cannot meet the budget, write what is possible instead of failing.")
@rehash_option
@engine_options("tokenizing and shard writing")
@overwrite_option
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
    from ..schedule import ScheduleSettings, format_statistics, schedule_corpus

    settings = ScheduleSettings.build(options)
    result = schedule_corpus(emb, cl, out, settings, overwrite=overwrite, progress=wants_progress(), log=note)
    if result.already_done:
        echo_summary(f"schedule: {out} is already done with these inputs and settings (nothing to do)")
        return
    stats = result.statistics
    click.echo(format_statistics(stats))
    what = "order only (dry run)" if settings.dry_run else f"shards: {', '.join(settings.formats)}"
    echo_summary(f"schedule: {stats['samples']:,} samples from {stats['unique_docs_used']:,} documents, {what} "
                 f"-> {out} in {result.seconds:.1f}s")
