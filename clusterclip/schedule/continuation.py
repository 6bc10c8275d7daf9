"""``schedule --continue OLD --at-sample N | --at-tokens T``: a new schedule whose first samples are OLD's.

The prefix is OLD's order up to the point (its rows, stages included, copied as they are); the sampler
plans the rest under the new settings with the clip counting what the prefix used
(:class:`.sampling.Prefix`). The shard writers are a function of the order and the token store, so the
shards up to the one holding the point are the same bytes as OLD's when the documents, the tokenizer
and the shard settings are: :meth:`Continued.check_matches` refuses a continuation where one of them
differs, naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .directory import ScheduleDir
from .law import StageSpan
from .sampling import Prefix

#: the settings that decide a shard's bytes besides the order and the tokens (OLD's and the new one's must agree)
SHARD_SETTINGS = ("formats", "shard_tokens", "align_tokens", "pack", "convention")
#: the recorded identity of the tokens
TOKEN_SETTINGS = ("tokenizer_digest", "eos_id", "bos_id")


class Continued:
    """OLD (a finished ``schedule`` directory) and where it is left."""

    def __init__(self, path: str | Path, at_sample: int | None, at_tokens: int | None):
        self.old = ScheduleDir(path)
        self.at_sample, self.at_tokens = at_sample, at_tokens
        n = self.old.n_samples
        if at_sample is not None and at_sample > n:
            raise InputError(f"--at-sample {at_sample}: past the end of --continue {path} ({n:,} samples); give "
                             f"at most --at-sample {n}")

    @property
    def flag(self) -> str:
        return f"--at-sample {self.at_sample}" if self.at_sample is not None else f"--at-tokens {self.at_tokens}"

    def check_matches(self, emb, cl, record: dict) -> None:
        """Refuse an OLD planned from other embeddings or clusters, or whose shards another tokenizer or other
        shard settings wrote, naming what differs."""
        inputs = self.old.info.inputs
        for key, d in (("embed", emb), ("cluster", cl)):
            if (inputs.get(key) or {}).get("manifest_sha256") != d.record()["manifest_sha256"]:
                raise InputError(f"--continue {self.old.path}: planned from other {key} output "
                                 f"({(inputs.get(key) or {}).get('path')}) than {d.path}; continue a schedule of "
                                 f"these EMB and CL, or plan a new one without --continue")
        differ = [name for name in TOKEN_SETTINGS if self.old.settings.get(name) != record.get(name)]
        if not (self.old.dry_run or record.get("dry_run")):
            differ += [name for name in SHARD_SETTINGS if self.old.settings.get(name) != record.get(name)]
        if differ:
            said = ", ".join(f"{n} {self.old.settings.get(n)!r} there, {record.get(n)!r} here" for n in differ)
            raise InputError(f"--continue {self.old.path}: its shards were written with other settings ({said}); "
                             f"give the same tokenizer and shard options as OLD so the shards up to the "
                             f"continued point are the same bytes")

    def prefix(self, sample_lengths: np.ndarray | None, excluded: np.ndarray | None = None) -> Prefix:
        """OLD's first samples up to the point (``sample_lengths``: every document's tokens, for ``--at-tokens``)."""
        if self.at_sample is not None:
            rows = self.old.order_head(self.at_sample)
        else:
            assert sample_lengths is not None and self.at_tokens is not None
            rows = self.old.order_head(self.old.n_samples)
            total = np.cumsum(sample_lengths[rows["doc_id"]])
            if not len(total) or total[-1] < self.at_tokens:
                have = int(total[-1]) if len(total) else 0
                raise InputError(f"--at-tokens {self.at_tokens}: past the end of --continue {self.old.path} "
                                 f"({have:,} tokens); give at most --at-tokens {have}")
            n = int(np.searchsorted(total, self.at_tokens, side="left")) + 1
            rows = {c: v[:n] for c, v in rows.items()}
        if excluded is not None and np.any(excluded[rows["doc_id"]]):
            raise InputError(f"--exclude: {int(excluded[rows['doc_id']].sum()):,} of the samples continued from "
                             f"{self.old.path} ({self.flag}) are held-out documents; continue at an earlier point "
                             f"or without --exclude")
        return Prefix(rows["doc_id"], rows["cluster"], rows["repeat"], _spans(rows["stage"]))

    def record(self, prefix: Prefix | None) -> dict:
        """What the manifest's statistics say of the continuation: where OLD was left, in samples."""
        return {"from": str(self.old.path.resolve()), "at_sample": len(prefix) if prefix is not None else 0,
                "stages": len(prefix.spans) if prefix is not None else 0}


def _spans(stage: np.ndarray) -> tuple[StageSpan, ...]:
    """The runs of equal ``stage`` values, as spans (one span for an empty prefix)."""
    n = len(stage)
    if n == 0:
        return ()
    cuts: np.ndarray = np.flatnonzero(np.diff(stage)) + 1
    starts = np.r_[0, cuts]
    stops = np.r_[cuts, n]
    return tuple(StageSpan(int(a), int(b)) for a, b in zip(starts, stops))


__all__ = ["Continued", "SHARD_SETTINGS", "TOKEN_SETTINGS"]
