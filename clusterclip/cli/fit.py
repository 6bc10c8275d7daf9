"""``clusterclip fit``: held-out loss regressed on the mixtures of proxy runs."""

from __future__ import annotations

import click

from ..mixsearch.settings import FitSettings
from .common import note, run_and_report, step_command, wants_progress
from .options import OutputOptions, SettingsCommand, build, setting_options


@click.command(name="fit", cls=SettingsCommand)
@click.argument("runs", type=click.Path(file_okay=False))
@setting_options(FitSettings, OutputOptions, help={"out": "Output directory (fit.json, points.parquet, manifest.json)."})
@step_command
def command(runs, out, overwrite, **options):
    """Fit the held-out loss of RUNS (a `clusterclip proxy` directory) against each schedule's mixture.

    \b
    Example:
      clusterclip fit runs/ --out fit/

    A schedule's mixture is each cluster's share of the tokens its proxies trained on; its loss
    the mean over seeds. The log-linear data-mixing law and a LightGBM regressor (RegMix) are
    fitted; each is judged by leave-one-out (every schedule predicted by the fit to the others:
    Spearman and R², printed whatever they are) and the better one is kept.
    """
    from ..mixsearch.fit_step import FitStep

    step = FitStep.open(runs, build(FitSettings, options), progress=wants_progress(), log=note)
    run_and_report(step, out, overwrite)
