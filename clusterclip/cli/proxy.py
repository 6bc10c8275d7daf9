"""``clusterclip proxy``: one small language model per schedule and seed, scored on a held-out set."""

from __future__ import annotations

import click

from ..proxy.settings import ProxySettings
from .common import note, run_and_report, step_command, wants_progress
from .options import OutputOptions, SettingsCommand, build, setting_options


@click.command(name="proxy", cls=SettingsCommand)
@click.argument("sched", nargs=-1, required=True, type=click.Path(file_okay=False))
@setting_options(ProxySettings, OutputOptions,
                 help={"out": "Output directory (runs.parquet, mixtures.parquet, pool.parquet, one directory per "
                              "run with heldout_loss.parquet, loss_curve.parquet and model/)."})
@step_command
def command(sched, out, overwrite, **options):
    """Train a small causal LM on each SCHED and score it on the held-out set of --eval.

    \b
    Example:
      clusterclip proxy sched-random/ sched-clusterclip/ --eval eval/ --out runs/ --seeds 3

    Each proxy is a transformers model (a 4-layer Llama by default, --model-config for
    another) trained from the same initial weights per seed, for the same number of tokens,
    on its schedule's shards read in order as their trainer reads them (--format bin: llm.c's
    loader, shuffling off). Each held-out document is scored on its own, with the schedule's
    delimiters, in windows of --context tokens: RUNS/NAME/heldout_loss.parquet holds the mean
    loss per token of each cluster, RUNS/NAME/model the model (save_pretrained). The summary
    gives, per schedule, the cluster-balanced and overall loss with their spread over seeds: a
    difference smaller than the spread is no difference. Deterministic for a thread count;
    a killed run resumes from its last checkpoint.
    """
    from ..proxy.proxy_step import ProxyStep

    step = ProxyStep.open(sched, build(ProxySettings, options), progress=wants_progress(), log=note)
    run_and_report(step, out, overwrite)
