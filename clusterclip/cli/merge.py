"""``clusterclip merge``: the partition directories of one sharded `embed` job -> one embed directory."""

from __future__ import annotations

import click

from .common import note, run_and_report, step_command, wants_progress
from .options import OutputOptions, SettingsCommand, setting_options


@click.command(name="merge", cls=SettingsCommand)
@click.argument("parts", nargs=-1, required=True, metavar="EMB_PART...", type=click.Path(file_okay=False))
@setting_options(OutputOptions, help={"out": "Output embed directory (docs.parquet, embeddings-*.npy, manifest.json)."})
@step_command
def command(parts, out, overwrite):
    """Merge the outputs of `clusterclip embed --num-partitions N --partition-index I` into one directory.

    \b
    Example:
      clusterclip merge emb-0 emb-1 emb-2 emb-3 --out emb/

    The result is the same as embedding the corpus in one run: documents in input order,
    doc_id dense from 0. Every partition is verified (sizes and sha256) and must be given
    once; partitions of other inputs or settings are refused, and together they must
    account for every input row.
    """
    from ..embed.merge import MergeStep

    run_and_report(MergeStep.open(list(parts), progress=wants_progress(), log=note), out, overwrite)
