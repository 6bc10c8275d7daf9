"""``clusterclip verify``: check output directories in full against their manifests."""

from __future__ import annotations

import sys

import click

from .common import echo_summary, rehash_option, step_command


@click.command(name="verify")
@click.argument("dirs", nargs=-1, required=True, metavar="DIR...", type=click.Path())
@click.option("--no-corpus", is_flag=True, help="Embed directories: do not check the corpus files.")
@rehash_option
@step_command
def command(dirs, no_corpus, rehash_inputs):
    """Check every file of each DIR (an embed, cluster or schedule directory) against its manifest.

    \b
    Examples:
      clusterclip verify emb/ cl/ sched/

    Sizes and sha256 of every file, the manifest's own checksum, the directory's structure
    (counts, doc ids, shard index) and, for embed directories, the corpus by content. Prints
    one line per bad file and exits with 3 when anything is wrong.
    """
    from ..verify import verify_directory

    bad = 0
    for d in dirs:
        manifest, problems = verify_directory(d, corpus=not no_corpus, rehash=rehash_inputs)
        if problems:
            bad += 1
            for p in problems:
                click.echo(f"error: {p}", err=True)
        else:
            n = len(manifest.get("outputs") or [])
            echo_summary(f"verify: {d}: ok ({manifest['step']}, {n} files checked)")
    if bad:
        sys.exit(3)
