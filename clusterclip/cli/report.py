"""``clusterclip report``: an HTML page of the clusters and of what a schedule does with them."""

from __future__ import annotations

import click

from ..report.settings import ReportSettings
from .common import run_and_report, step_command
from .options import OutputOptions, SettingsCommand, build, setting_options


@click.command("report", cls=SettingsCommand)
@click.argument("emb", type=click.Path(file_okay=False))
@click.argument("cl", type=click.Path(file_okay=False))
@click.argument("sched", type=click.Path(file_okay=False), required=False)
@setting_options(ReportSettings, OutputOptions,
                 help={"out": "Output directory: index.html (self-contained), figures/*.png, report.json, "
                              "manifest.json."})
@step_command
def command(emb, cl, sched, out, overwrite, **options):
    """Write an HTML report of EMB + CL (and of the schedule SCHED, when given) into --out.

    \b
    Example:
      clusterclip report work/emb work/cl work/schedule --out work/report
      # then open work/report/index.html in a browser (no network needed)

    \b
    The page shows:
      - cluster sizes and the share each cluster gets under the random, uniform and
        clusterclip samplers (and under SCHED, counted from its order.parquet);
      - with SCHED: each cluster's share over training, how often documents repeat,
        and which clusters left the pool and when;
      - a 2-D map of the centroids (PCA, or UMAP when installed), sized by cluster size;
      - a table of the clusters: size, mean similarity, keywords (TF-IDF of a sample of
        each cluster against the others) and the documents nearest the centroid and at
        the edge, with their id, file and row.

    Texts are read back from the corpus files recorded by `embed`. An --out that holds
    anything but an earlier report is refused unless --overwrite.
    """
    from ..report.build import ReportStep

    run_and_report(ReportStep.open(emb, cl, sched, build(ReportSettings, options)), out, overwrite)
