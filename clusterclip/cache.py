"""clusterclip's cache: what later runs reuse, in one folder.

``$CLUSTERCLIP_CACHE`` (default ``$XDG_CACHE_HOME/clusterclip``, else ``~/.cache/clusterclip``) holds::

    static/   the default static model of ``embed --encoder model2vec`` (:mod:`clusterclip.embed.model2vec`)
    tokens/   tokenized corpora: one token store per corpus content x tokenizer (:mod:`clusterclip.tokens.cache`)

``--token-cache DIR|none`` (``schedule``, ``mixtures``) puts the token stores in ``DIR`` instead of
``$CLUSTERCLIP_CACHE/tokens``, or keeps none (each run tokenizes in its own ``--out``). ``clusterclip
cache list|clean`` (:class:`CacheSettings`) is a thin CLI over :func:`list_token_cache` and
:func:`clean_token_cache`. Nothing in the cache is an output: deleting it costs only the time to
tokenize again.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .settings import Settings, setting

CACHE_ENV = "CLUSTERCLIP_CACHE"
TOKENS_DIR = "tokens"
#: ``--token-cache none``: no cache (the token store is built in the run's own output, and deleted there)
NO_CACHE = "none"
TOKEN_CACHE_HELP = ("Where tokenized corpora are kept for later runs to reuse (one token store per corpus content "
                    "and tokenizer; `clusterclip cache list|clean`) [default: $CLUSTERCLIP_CACHE/tokens, "
                    "~/.cache/clusterclip/tokens]; 'none' tokenizes in --out and keeps nothing. The shards are the "
                    "same bytes either way.")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def cache_root() -> Path:
    """``$CLUSTERCLIP_CACHE``, else ``$XDG_CACHE_HOME/clusterclip``, else ``~/.cache/clusterclip``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "clusterclip"


def token_cache_setting():
    """The ``--token-cache DIR|none`` field of every settings class whose step tokenizes (not recorded: the bytes
    are the same with or without a cache)."""
    return setting(None, flag="--token-cache", kind=str, optional=True, record=False, group="tokens",
                   metavar="DIR|none", help=TOKEN_CACHE_HELP)


def token_cache_dir(value: str | None) -> Path | None:
    """The token cache of ``--token-cache`` (None: the default, ``$CLUSTERCLIP_CACHE/tokens``), or None for ``none``."""
    if value is None:
        return cache_root() / TOKENS_DIR
    if value.strip().lower() == NO_CACHE:
        return None
    if not value.strip():
        raise InputError("--token-cache '': give a directory, or 'none' to keep no token cache")
    return Path(value).expanduser()


def parse_duration(text: str, flag: str = "--older-than") -> float:
    """Seconds of ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` (a number and one unit)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not m:
        raise InputError(f"{flag} {text!r}: not a duration; give a number and a unit: s, m, h, d or w (e.g. 30d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class CacheSettings(Settings):
    """``clusterclip cache list|clean`` (see its ``--help``)."""

    step = "cache"

    token_cache: str | None = setting(None, flag="--token-cache", kind=str, optional=True, group="input",
                                      metavar="DIR",
                                      help="The token cache to list or clean [default: $CLUSTERCLIP_CACHE/tokens, "
                                           "~/.cache/clusterclip/tokens].")
    older_than: str | None = setting(None, flag="--older-than", kind=str, optional=True, group="clean",
                                     metavar="DURATION",
                                     help="clean: only the token stores no run has used for this long (30d, 12h, "
                                          "90m, 2w) [default: every one].")
    dry_run: bool = setting(False, flag="--dry-run", kind=bool, group="clean",
                            help="clean: say what would be deleted, delete nothing.")
    json: bool = setting(False, flag="--json", kind=bool, group="show", help="list: print JSON instead of text.")

    def validate(self) -> None:
        if self.older_than is not None:
            parse_duration(self.older_than)
        if self.token_cache is not None and self.token_cache.strip().lower() == NO_CACHE:
            raise InputError("--token-cache none: there is no cache to list or clean; give a directory or leave it "
                             "out for the default")

    def directory(self) -> Path:
        found = token_cache_dir(self.token_cache)
        assert found is not None  # validate() refused 'none'
        return found


def list_token_cache(settings: CacheSettings | None = None) -> list[dict]:
    """One record per token store of the cache (see :meth:`clusterclip.tokens.cache.TokenCache.entries`)."""
    from .tokens.cache import TokenCache

    s = settings or CacheSettings()
    return TokenCache(s.directory()).entries()


@dataclass
class CleanResult:
    """What ``cache clean`` deleted (or, with ``--dry-run``, would delete), and what it left because a run uses it."""

    removed: list[dict]
    in_use: list[dict]
    kept: int

    @property
    def bytes_freed(self) -> int:
        return sum(int(e["bytes"]) for e in self.removed)


def clean_token_cache(settings: CacheSettings | None = None, *, now: float | None = None) -> CleanResult:
    """Delete the token stores not used for ``--older-than`` (every one without it); a store a run is reading or
    building is left (and listed in ``in_use``)."""
    from .tokens.cache import TokenCache

    s = settings or CacheSettings()
    cache = TokenCache(s.directory())
    horizon = None if s.older_than is None else (time.time() if now is None else now) - parse_duration(s.older_than)
    removed, in_use, kept = [], [], 0
    for entry in cache.entries():
        if horizon is not None and entry["last_used"] >= horizon:
            kept += 1
            continue
        if cache.remove(entry["dir"], dry_run=s.dry_run):
            removed.append(entry)
        else:
            in_use.append(entry)
    return CleanResult(removed, in_use, kept)
