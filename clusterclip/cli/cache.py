"""``clusterclip cache list|clean``: the token cache (tokenized corpora that later schedules reuse)."""

from __future__ import annotations

import json
import time

import click

from ..cache import CacheSettings
from .common import echo_summary, step_command
from .options import SettingsCommand, build, setting_options


@click.command(name="cache", cls=SettingsCommand)
@click.argument("action", type=click.Choice(["list", "clean"]), metavar="list|clean")
@setting_options(CacheSettings)
@step_command
def command(action, **options):
    """List the token cache, or clean it.

    \b
    Examples:
      clusterclip cache list                        one line per token store: corpus, tokenizer, size, last use
      clusterclip cache clean --older-than 30d      delete the stores no run has used for 30 days
      clusterclip cache clean                       delete every store (a store in use is left)

    `schedule` and `mixtures` keep one token store per corpus content and tokenizer in the cache
    ($CLUSTERCLIP_CACHE/tokens, ~/.cache/clusterclip/tokens by default; --token-cache moves it), so a
    later schedule of the same corpus tokenizes nothing it already has. Deleting a store costs only
    the time to tokenize again; a store a run is reading or building is never deleted.
    """
    from ..cache import clean_token_cache, list_token_cache

    settings = build(CacheSettings, options)
    if action == "list":
        entries = list_token_cache(settings)
        if settings.json:
            click.echo(json.dumps(entries, indent=2))
            return
        for e in entries:
            echo_summary(_entry_line(e))
        echo_summary(f"cache: {_stores(len(entries))}, {_size(sum(e['bytes'] for e in entries))} in "
                     f"{settings.directory()}")
        return
    result = clean_token_cache(settings)
    verb = "would delete" if settings.dry_run else "deleted"
    for e in result.removed:
        echo_summary(f"{verb}: {_entry_line(e)}")
    for e in result.in_use:
        click.echo(f"note: in use by a running schedule, left: {e['dir']}", err=True)
    echo_summary(f"cache: {verb} {_stores(len(result.removed))} ({_size(result.bytes_freed)}), kept "
                 f"{result.kept + len(result.in_use)} in {settings.directory()}")


def _entry_line(e: dict) -> str:
    age = (time.time() - e["last_used"]) / 86400
    docs = f"{e['tokenized']:,} of {e['documents']:,} documents" if e.get("documents") else "no documents yet"
    return (f"{e['key'][:12]}  {e['state']:<10} {docs}, {e['tokens']:,} tokens, {_size(e['bytes'])}, "
            f"tokenizer {e['tokenizer'] or '?'}, used {age:.1f} days ago")


def _stores(n: int) -> str:
    return f"{n} token store{'' if n == 1 else 's'}"


def _size(n: int) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"
