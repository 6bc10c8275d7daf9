"""``clusterclip distill``: a static (model2vec) embedding model distilled from a transformer encoder, offline."""

from __future__ import annotations

import click

from ..embed.distill import DistillSettings
from .common import note, run_and_report, step_command, wants_progress
from .options import OutputOptions, SettingsCommand, build, setting_options


@click.command(name="distill", cls=SettingsCommand)
@setting_options(DistillSettings, OutputOptions,
                 help={"out": "Output directory (model.safetensors, tokenizer.json, config.json, manifest.json)."})
@step_command
def command(out, overwrite, **options):
    """Distill a static embedding model for `embed --encoder model2vec` into OUT (no download).

    \b
    Examples:
      clusterclip distill --out static/
      clusterclip embed corpus/ --out emb/ --encoder model2vec --model static/

    \b
    Every token of the encoder's vocabulary is embedded on its own (mean of the last hidden
    states), reduced by PCA and weighted by SIF, as model2vec's own distillation does. OUT is a
    model2vec model directory (model2vec.StaticModel.from_pretrained reads it) with a
    manifest. Without --model of `embed --encoder model2vec`, the default model is this
    command's default output in $CLUSTERCLIP_CACHE/static (made there on first use).
    """
    from ..embed.distill import DistillStep

    run_and_report(DistillStep(build(DistillSettings, options), progress=wants_progress(), log=note), out, overwrite)
