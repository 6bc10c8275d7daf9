"""``clusterclip clusters``: the clusters of a ``cluster`` directory as a table, or one cluster in full."""

from __future__ import annotations

import json

import click

from ..report.settings import ClustersSettings
from .common import echo_summary, step_command
from .options import SettingsCommand, build, setting_options

SHOW_EXCERPT_CHARS = 480


@click.command("clusters", cls=SettingsCommand)
@click.argument("cl", type=click.Path(file_okay=False))
@setting_options(ClustersSettings)
@step_command
def command(cl, **options):
    """List the clusters of CL (a `clusterclip cluster` directory): size, mean similarity, keywords.

    \b
      clusterclip clusters work/cl                 one line per cluster
      clusterclip clusters work/cl --show 12       cluster 12: keywords and example documents
      clusterclip clusters work/cl --json          the table as JSON (with example documents)
      clusterclip clusters work/cl --schedule out  plus samples and tokens per cluster of that schedule
      clusterclip clusters work/cl --schedule out --certificate [--json]
                                                   its mixture certificate: planned vs got per cluster

    Keywords and examples need the texts, which are read back from the corpus through the
    embed directory: by default the one CL/manifest.json records (inputs.embed.path), used
    only if its manifest still has the recorded digest; --emb names it when it moved. Without
    it the table shows sizes and similarities only (and --show is refused).
    """
    from ..errors import InputError
    from ..report import inputs
    from ..report.table import add_schedule, cluster_table
    from ..report.text import format_cluster, format_table

    settings = build(ClustersSettings, options)
    assert isinstance(settings, ClustersSettings)
    emb, show, as_json, sample_docs, seed = (settings.emb, settings.show, settings.json, settings.sample_docs,
                                             settings.seed)
    if settings.certificate:
        _certificate(cl, settings)
        return
    info = inputs.read_clusters(cl)
    sched = inputs.read_schedule(settings.schedule, info) if settings.schedule is not None else None
    emb_dir = emb if emb is not None else inputs.recorded_embed_dir(info)
    if emb_dir is None:
        recorded = info.recorded_embed_path
        why = (f"the embed directory recorded in {cl}/manifest.json ({recorded}) is missing or has changed"
               if recorded else f"{cl}/manifest.json records no embed directory")
        if show is not None:
            raise InputError(f"--show {show}: needs the texts, but {why}; pass --emb EMB")
        click.echo(f"note: no keywords: {why}; pass --emb EMB for keywords and examples", err=True)
    if show is not None and not 0 <= show < info.k:
        raise InputError(f"--show {show}: no such cluster in {cl} (ids are 0..{info.k - 1})")
    clusters = None if show is None else [show]
    examples = show is not None or as_json
    table = cluster_table(
        cl, emb_dir, clusters=clusters, sample_docs=sample_docs, seed=seed,
        n_nearest=3 if examples else 0, n_edge=2 if examples else 0,
        excerpt_chars=SHOW_EXCERPT_CHARS if show is not None else 200, cluster_info=info,
    )
    if sched is not None:
        add_schedule(table, sched)
    if as_json:
        payload = table.rows[0].to_json() if show is not None else table.to_json()
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    lines = format_cluster(table.rows[0], table.n_docs) if show is not None else format_table(table)
    for line in lines:
        echo_summary(line)


def _certificate(cl, settings: ClustersSettings) -> None:
    """``--certificate``: the mixture certificate of ``--schedule`` (JSON with ``--json``, else a table)."""
    from ..errors import InputError
    from ..report.certificate import certificate_of, format_certificate

    if settings.schedule is None:
        raise InputError("--certificate: needs --schedule SCHED (the schedule to certify); add it")
    if settings.show is not None:
        raise InputError("--certificate: prints every cluster; leave out --show")
    cert = certificate_of(cl, settings.schedule)
    if settings.json:
        click.echo(json.dumps(cert, indent=2))
        return
    for line in format_certificate(cert):
        echo_summary(line)
