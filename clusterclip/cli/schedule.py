"""``clusterclip schedule``: ClusterClip order over the clusters, then token shards in that order."""

from __future__ import annotations

import time

import click

from ..sampling import SAMPLERS
from ..schedule import DEFAULT_SHARD_TOKENS, schedule_corpus
from ..schedule_stats import format_statistics
from ..shards import formats_help
from ..tokenization import CONVENTIONS
from .common import echo_summary, overwrite_option, step_command, wants_progress


def _formats(ctx, param, value):
    """``bin,parquet`` (or a list, from a config file) -> ``("bin", "parquet")``; checked by the library."""
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return tuple(v.strip() for v in str(value).split(",") if v.strip())


@click.command(name="schedule")
@click.argument("emb", type=click.Path(file_okay=False))
@click.argument("cl", type=click.Path(file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(), help="Output directory (order, shards, manifest).")
@click.option("--sampler", type=click.Choice(SAMPLERS), default="clusterclip", show_default=True,
              help="clusterclip: clusters uniformly + repetition clip; uniform: no clip; random: per-epoch shuffle.")
@click.option("--max-repeats", type=click.IntRange(min=1), default=4, show_default=True,
              help="ClusterClip's clip: no document is used more than this many times.")
@click.option("--alpha", type=float, default=0.0, show_default=True,
              help="Cluster weights ∝ size**alpha: 0 = uniform over clusters (the paper), 1 = by size.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Budget: EPOCHS × number of documents samples (default: 1 epoch).")
@click.option("--samples", type=click.IntRange(min=1), default=None, help="Budget: exactly this many samples.")
@click.option("--tokens", type=click.IntRange(min=1), default=None,
              help="Budget: stop at the first sample that brings the total to this many tokens (delimiters included).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")
@click.option("--tokenizer", type=str, default=None,
              help="tokenizer.json file, local Hugging Face tokenizer directory, or hub name.")
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
              help="About this many tokens per shard file.")
@click.option("--dry-run", is_flag=True, help="Write the order and statistics only; no tokenizing, no shards.")
@click.option("--allow-partial", is_flag=True,
              help="When the clip cannot meet the budget, write what is possible instead of failing.")
@overwrite_option
@step_command
def command(emb, cl, out, sampler, max_repeats, alpha, epochs, samples, tokens, seed, tokenizer, eos_token,
            bos_token, convention, allow_ordinary_delimiter, align_tokens, pack, formats, shard_tokens, dry_run,
            allow_partial, overwrite):
    """Order the documents of EMB by the clusters of CL and write token shards in that order.

    \b
    Example:
      clusterclip schedule emb/ cl/ --out sched/ --tokenizer tokenizer.json \\
          --epochs 2 --max-repeats 4 --format bin,parquet

    The shards hold each sample's tokens (with --bos-token before and EOS after), in exactly
    the order of order.parquet: a trainer that reads them sequentially trains on the
    ClusterClip order. README, "Reading the shards from a trainer", gives the flags per trainer.
    """
    started = time.perf_counter()
    manifest = schedule_corpus(
        emb, cl, out, sampler=sampler, max_repeats=max_repeats, alpha=alpha, epochs=epochs,
        samples=samples, tokens=tokens, seed=seed, tokenizer=tokenizer, eos_token=eos_token,
        bos_token=bos_token, convention=convention, allow_ordinary_delimiter=allow_ordinary_delimiter,
        align_tokens=align_tokens, pack=pack, formats=formats, shard_tokens=shard_tokens, dry_run=dry_run,
        allow_partial=allow_partial,
        overwrite=overwrite, progress=wants_progress(),
    )
    stats = manifest["statistics"]
    if manifest.get("already_done"):
        echo_summary(f"schedule: {out} is already done with these inputs and settings (nothing to do)")
        return
    click.echo(format_statistics(stats))
    what = "order only (dry run)" if dry_run else f"shards: {', '.join(formats)}"
    echo_summary(
        f"schedule: {stats['samples']} samples from {stats['unique_docs_used']} documents, "
        f"{what} -> {out} in {time.perf_counter() - started:.1f}s"
    )
