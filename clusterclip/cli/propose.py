"""``clusterclip propose``: the mixture a fit predicts best, as a `schedule --weights` file."""

from __future__ import annotations

import click

from ..mixsearch.settings import ProposeSettings
from .common import run_and_report, step_command
from .options import OutputOptions, SettingsCommand, build, setting_options


@click.command(name="propose", cls=SettingsCommand)
@click.argument("fit", type=click.Path(file_okay=False))
@setting_options(ProposeSettings, OutputOptions,
                 help={"out": "The weights file to write (CSV: cluster, weight), with NAME.manifest.json beside it.",
                       "overwrite": "Replace a weights file that `clusterclip propose` wrote for another job."})
@step_command
def command(fit, out, overwrite, **options):
    """Propose the cluster mixture that FIT (a `clusterclip fit` directory) predicts best.

    \b
    Example:
      clusterclip propose fit/ --out weights.csv --max-kl 0.5
      clusterclip schedule emb/ cl/ --out sched/ --tokenizer tok.json --weights weights.csv \\
          --balance tokens --budget-tokens 2000000000

    The weights are token shares within what the sampler can realise: each cluster's share at
    most what its documents x --max-repeats supply of --budget-tokens, and at most --max-kl
    (KL divergence) from the corpus's natural mixture. The log-linear law is minimised exactly;
    for LightGBM the mean of the best random feasible mixtures is taken (RegMix). The sidecar
    NAME.manifest.json records the fit, its leave-one-out figures, the constraints and the
    predicted loss beside the natural mixture's.
    """
    from ..mixsearch.propose_file import ProposeStep

    run_and_report(ProposeStep.open(fit, build(ProposeSettings, options)), out, overwrite)
