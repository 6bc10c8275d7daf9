"""Token shards in the training order, in formats that trainers read as they are.

:func:`write_shards` streams through the order once. Each sample is ``BOS? + document tokens +
EOS?`` (the delimiters chosen by ``bos_id`` / ``eos_id``); the samples concatenated are *the
stream*, which :mod:`clusterclip.shards.plan` cuts into shards (whole samples by default; a
fixed number of tokens with ``align_tokens`` or ``pack``). Every requested format writes the
same shards from the same stream, each in its own sub-directory of ``out_dir`` with file names
that sort in training order:

========== ================================================ ==============================
format     files                                            read by
========== ================================================ ==============================
bin        ``bin/train_000000.bin``...                      llm.c, modded-nanogpt
raw        ``raw/tokens_000000.bin``...                     nanoGPT, OLMo-core
megatron   ``megatron/shard_000000.bin`` + ``.idx``...      Megatron ``IndexedDataset``
mds        ``mds/index.json`` + ``mds/shard.00000.mds``...  MosaicML ``StreamingDataset``
datatrove  ``datatrove/shard_000000.ds`` + ``.ds.index``... nanotron ``DatatroveFolderDataset``
parquet    ``parquet/part-000000.parquet``...               ``datasets``, litdata, pyarrow
========== ================================================ ==============================

**Adding a format**: write one module that defines a
:class:`~clusterclip.shards.base.ShardFormat` subclass (name, file names, token dtype rule,
writer, ``read_shard``) and ends with ``FORMAT = MyFormat``, and name it in :data:`FORMATS` (one line); ``--format``,
``inspect``, :func:`verify_shards` and the generic tests over the registry use it from then on.
Add its own test that reads it back with its owner's reader.

Trust: every shard file is written under a temporary name and renamed when complete, and its
size and sha256 are appended to a journal (:mod:`clusterclip.shards.journal`); a rerun with
``resume=True`` keeps only shards whose files re-hash to the journal's digests and rewrites the
rest, so the output is byte-identical to an uninterrupted run. After writing, each format's
shards must hold exactly the order's samples and tokens (else :class:`AccountingError`).
``shards.json`` (every shard of every format: files with size and sha256, cut, tokens, samples)
and ``mds/index.json`` are written at the end; :func:`verify_shards` checks them later.
"""

from __future__ import annotations

from ..errors import ClusterClipError, InputError
from ..registry import Registry
from .base import ShardPlan, StreamLayout
from .index import INDEX_FILE, find_shards, read_index
from .plan import plan_shards, total_tokens
from .verify import verify_shards

DEFAULT_SHARD_TOKENS = 100_000_000


class AccountingError(ClusterClipError):
    """The shards written do not hold exactly the order's samples and tokens (a bug, never ignored)."""


#: format name -> the module that defines it (ending with ``FORMAT = YourFormat``): one line per format,
#: in the documented order
FORMATS: Registry = Registry("shard format", "FORMAT", {
    "bin": "clusterclip.shards.bin",
    "raw": "clusterclip.shards.raw",
    "megatron": "clusterclip.shards.megatron",
    "mds": "clusterclip.shards.mds",
    "datatrove": "clusterclip.shards.datatrove",
    "parquet": "clusterclip.shards.parquet",
})

__all__ = [
    "CONVENTION_MIN_SHARDS",
    "FORMATS",
    "INDEX_FILE",
    "AccountingError",
    "ShardJob",
    "ShardPlan",
    "StreamLayout",
    "check_formats",
    "find_shards",
    "formats_help",
    "plan_shards",
    "read_index",
    "read_sample",
    "read_shard",
    "read_stream",
    "shard_tokens_for",
    "total_tokens",
    "verify_shards",
    "write_here",
    "write_shard",
    "write_shards",
]


def formats_help() -> str:
    """``name (who reads it)`` for every registered format, for ``--format``'s help."""
    return "; ".join(f"{name}: {cls.read_by}" for name, cls in FORMATS.items())


def check_formats(formats, *, align_tokens: int | None = None, pack: int | None = None) -> tuple[str, ...]:
    """``formats`` without duplicates, in the order given; a one-line error for an unknown or empty
    list, or a format that ``--align-tokens`` / ``--pack`` does not apply to."""
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InputError(f"--format {','.join(formats)}: unknown {', '.join(unknown) or 'empty'}; "
                         f"choose from {','.join(FORMATS)}")
    if align_tokens and pack:
        raise InputError("--align-tokens and --pack: give one (--pack already cuts every shard at whole rows)")
    if align_tokens:
        bad = [f for f in formats if not FORMATS[f].supports_align]
        if bad:
            ok = ",".join(f for f in FORMATS if FORMATS[f].supports_align)
            raise InputError(f"--align-tokens {align_tokens}: applies to token streams ({ok}), not to "
                             f"{','.join(bad)}; write those in another run, or use --pack for row formats")
    if pack:
        bad = [f for f in formats if not FORMATS[f].supports_pack]
        if bad:
            raise InputError(f"--pack {pack}: does not apply to {','.join(bad)}; write it in another run")
    return formats


# writing and reading back use FORMATS (above)
from .read import read_sample, read_shard, read_stream  # noqa: E402
from .write import CONVENTION_MIN_SHARDS, ShardJob, shard_tokens_for, write_here, write_shard, write_shards  # noqa: E402
