"""``clusterclip embed``: corpus files -> L2-normalised document embeddings."""

from __future__ import annotations

import click

from ..embed.settings import EmbedSettings
from .common import note, run_and_report, step_command, wants_progress
from .options import OutputOptions, SettingsCommand, build, setting_options


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
    from ..embed.step import EmbedStep

    step = EmbedStep(list(inputs), build(EmbedSettings, options), progress=wants_progress(), log=note)
    run_and_report(step, out, overwrite)
