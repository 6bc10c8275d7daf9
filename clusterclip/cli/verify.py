"""``clusterclip verify``: check output directories in full against their manifests."""

from __future__ import annotations

import sys

import click

from ..verify import VerifySettings
from .common import echo_summary, step_command
from .options import SettingsCommand, build, setting_options


@click.command(name="verify", cls=SettingsCommand)
@click.argument("dirs", nargs=-1, required=True, metavar="DIR...", type=click.Path())
@setting_options(VerifySettings)
@step_command
def command(dirs, **options):
    """Check each DIR (any clusterclip output: embed, merge, cluster, schedule, report) against its manifest.

    \b
    Examples:
      clusterclip verify emb/ cl/ sched/ report/

    Every output: the size and sha256 of every file and the manifest's own checksum. Embed
    (and merge), cluster and schedule directories also: their structure (part shapes, counts,
    doc ids, cluster table, shard index); embed directories also the corpus files by content
    (unless --no-corpus). Prints one line per bad file and exits with 3 when anything is wrong.
    """
    from ..verify import verify_directory

    settings = build(VerifySettings, options)
    bad = 0
    for d in dirs:
        manifest, problems = verify_directory(d, corpus=not settings.no_corpus, rehash=settings.rehash_inputs)
        if problems:
            bad += 1
            for p in problems:
                click.echo(f"error: {p}", err=True)
        else:
            n = len(manifest.get("outputs") or [])
            echo_summary(f"verify: {d}: ok ({manifest['step']}, {n} files checked)")
    if bad:
        sys.exit(3)
