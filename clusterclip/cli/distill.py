"""``clusterclip distill``: a static (model2vec) embedding model distilled from a transformer encoder, offline."""

from __future__ import annotations

import click

from ..embed.distill import DistillSettings
from .common import echo_summary, note, step_command, wants_progress
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
    from ..embed.distill import distill_static_model

    settings = build(DistillSettings, options)
    result = distill_static_model(out, settings, overwrite=overwrite, progress=wants_progress(), log=note)
    if result.already_done:
        echo_summary(f"distill: {out} is already done with this model and these settings (nothing to do)")
        return
    st = result.statistics
    echo_summary(f"distill: {st['vocab_size']:,} tokens ({st['distilled_tokens']:,} distilled), dim {st['dim']} of "
                 f"{st['source_dim']} ({st['explained_variance']:.1%} of the variance), in {result.seconds:.1f} s -> {out}")
