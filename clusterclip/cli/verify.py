"""``clusterclip verify``: check output directories in full against their manifests."""

from __future__ import annotations

import sys

import click

from ..verify import VerifySettings
from .common import echo_summary, step_command
from .options import SettingsCommand, build, setting_options

ADOPTED = {"adopted": "; adopted: reruns and --overwrite now treat it as clusterclip's own",
           "ours": "; already clusterclip's own (nothing to adopt)"}


@click.command(name="verify", cls=SettingsCommand)
@click.argument("dirs", nargs=-1, required=True, metavar="DIR...", type=click.Path())
@setting_options(VerifySettings)
@step_command
def command(dirs, **options):
    """Check each DIR (any clusterclip output: embed, merge, cluster, schedule, mixtures, report) against its manifest.

    \b
    Examples:
      clusterclip verify emb/ cl/ sched/ report/
      clusterclip verify --adopt work/emb work/cl work/schedule   # outputs of an earlier version

    Every output: the size and sha256 of every file and the manifest's own checksum. Embed
    (and merge), cluster and schedule directories also: their structure (part shapes, counts,
    doc ids, cluster table, shard index); embed directories also the corpus files by content
    (unless --no-corpus). Prints one line per bad file and exits with 3 when anything is wrong.

    --adopt: an output written by an earlier clusterclip (no .clusterclip/committed.json) is
    adopted once every check passes: a rerun of its step then finds it "already done" (or
    refuses other settings, naming them) and --overwrite replaces it.
    """
    from ..verify import adopt_directory, verify_directory

    settings = build(VerifySettings, options)
    bad = 0
    for d in dirs:
        kw = {"corpus": not settings.no_corpus, "rehash": settings.rehash_inputs}
        state = None
        if settings.adopt:
            manifest, problems, state = adopt_directory(d, **kw)
        else:
            manifest, problems = verify_directory(d, **kw)
        if problems:
            bad += 1
            for p in problems:
                click.echo(f"error: {p}", err=True)
        else:
            assert manifest is not None
            n = len(manifest.get("outputs") or [])
            echo_summary(f"verify: {d}: ok ({manifest['step']}, {n} files checked){ADOPTED.get(state or '', '')}")
    if bad:
        sys.exit(3)
