"""``clusterclip embed``: corpus files -> L2-normalised document embeddings."""

from __future__ import annotations

import click

from ..embed.settings import EmbedSettings
from .common import echo_summary, note, step_command, wants_progress
from .options import OutputOptions, SettingsCommand, build, setting_options


def format_summary(result) -> str:
    st, s = result.statistics, result.settings
    if result.already_done:
        return f"embed: {result.out} is already done with these inputs and settings (nothing to do)"
    rate = result.processed / result.seconds if result.seconds > 0 else 0.0
    part = f", partition {s['partition_index']}/{s['num_partitions']}" if s.get("num_partitions", 1) > 1 else ""
    limit = f" (--limit {s['limit']})" if s.get("limit") else ""
    resumed = " (resumed)" if result.state == "resume" else ""
    inc = result.manifest.get("incremental")
    if inc:
        resumed += (f" (incremental: {len(inc['embedded'])} files embedded, {len(inc['reused'])} reused "
                    f"= {inc['reused_docs']:,} docs, {len(inc['dropped'])} old files dropped)")
    encoder = "" if s.get("backend", "hf") == "hf" else f"{s['backend']} "
    return (f"embed: {st['n_docs']:,} docs{part}{limit}, dim {st['dim']}, {st['skipped_empty']:,} empty skipped, "
            f"{st.get('truncated_docs', 0):,} truncated at --max-length {s['max_length']}, {st['tokens']:,} tokens, "
            f"{encoder}{s['device']} {s['dtype']}, in {result.seconds:.1f} s ({rate:,.1f} docs/s){resumed} -> {result.out}")


@click.command(name="embed", cls=SettingsCommand)
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@setting_options(EmbedSettings, OutputOptions,
                 help={"out": "Output directory (docs.parquet, embeddings-*.npy, manifest.json)."})
@step_command
def command(inputs, out, overwrite, **options):
    """Embed the documents of INPUT... (files, directories or globs) into OUT.

    \b
    Examples:
      clusterclip embed corpus/ --out emb/
      clusterclip embed 'data/*.jsonl.zst' --out emb/ --text-column content --id-column id
      clusterclip embed data/ --out emb-$SLURM_ARRAY_TASK_ID --num-partitions 8 --partition-index $SLURM_ARRAY_TASK_ID
      clusterclip merge emb-0 emb-1 ... emb-7 --out emb/

    \b
    Inputs: Parquet (.parquet) or JSON lines (.jsonl/.json/.ndjson), optionally .gz or .zst;
    directories are searched recursively (other file types there are listed and skipped).
    Whitespace-only documents are skipped and counted.

    Each document is encoded, mean-pooled over its tokens and L2-normalised (as in the
    ClusterClip reference code). The output keeps the input order; docs.parquet maps each
    embedding row (doc_id) back to its file and row. Rerunning a finished command does
    nothing; rerunning an interrupted one resumes after the last finished part.
    """
    from ..embed import embed_corpus

    settings = build(EmbedSettings, options)
    result = embed_corpus(list(inputs), out, settings, overwrite=overwrite, progress=wants_progress(), log=note)
    echo_summary(format_summary(result))
