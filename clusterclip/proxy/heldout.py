"""The held-out set (SPEC §7): documents drawn per cluster, seeded, and a user's target texts.

:func:`select_heldout` is pure (labels in, doc_ids out). It is stratified by cluster: each cluster
gives ``per_cluster`` documents, or ``fraction`` of its documents (rounded, at least one), but
never all of them: at least one document of every cluster stays for training, so holding out
never removes a topic from the training data. A cluster of one document cannot give one and
keep one; it is left unscored (:attr:`HeldoutSelection.unscored`).

Inside a cluster the documents are taken in the order of one seeded random permutation of the
corpus, so the selection depends only on the labels and the seed, and a larger ``per_cluster``
holds out a superset of a smaller one (raising it later keeps every earlier score comparable).

:func:`target_texts` reads a file of texts the user cares about (CLIMB's target domain) with the
corpus readers (JSON lines, Parquet, ``.gz``/``.zst``): they are scored as one more group.
:func:`tokenize_heldout` tokenizes both once, with the schedules' tokenizer, into a token store
(:mod:`clusterclip.tokens`); :func:`heldout_samples` gives each document with the schedules'
delimiters, as the scorer reads it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..settings import Rule

#: ``--per-cluster`` (documents held out per cluster) and ``--fraction`` (share of each cluster)
PER_CLUSTER = Rule(flag="--per-cluster", kind=int, min=1, max=1 << 40, optional=True)
FRACTION = Rule(flag="--fraction", kind=float, min=0, min_open=True, max=0.5, optional=True)
#: documents held out per cluster when neither ``--per-cluster`` nor ``--fraction`` is given
DEFAULT_PER_CLUSTER = 8


@dataclass(frozen=True)
class HeldoutSelection:
    """The held-out documents: ``doc_id`` ascending and each one's ``cluster``; ``per_cluster``
    [K]: how many each cluster gave; ``unscored``: the non-empty clusters that gave none."""

    doc_id: np.ndarray
    cluster: np.ndarray
    per_cluster: np.ndarray
    unscored: np.ndarray

    def __len__(self) -> int:
        return len(self.doc_id)

    def statistics(self) -> dict:
        scored = self.per_cluster[self.per_cluster > 0]
        return {"heldout_docs": int(len(self.doc_id)), "scored_clusters": int(len(scored)),
                "unscored_clusters": [int(k) for k in self.unscored],
                "min_per_cluster": int(scored.min()) if len(scored) else 0,
                "max_per_cluster": int(scored.max()) if len(scored) else 0}


def heldout_counts(sizes: np.ndarray, *, per_cluster: int | None = None, fraction: float | None = None) -> np.ndarray:
    """Documents each cluster gives: ``per_cluster`` or ``round(fraction * size)`` (at least 1), at most
    ``size - 1`` (one stays for training); 0 for clusters of fewer than two documents."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if per_cluster is not None and fraction is not None:
        raise InputError("--per-cluster and --fraction: give one of them")
    if fraction is not None:
        fraction = FRACTION.check(fraction)
        wanted = np.maximum(np.floor(fraction * sizes + 0.5).astype(np.int64), 1)
    else:
        per_cluster = PER_CLUSTER.check(DEFAULT_PER_CLUSTER if per_cluster is None else per_cluster)
        wanted = np.full(len(sizes), per_cluster, dtype=np.int64)
    return np.clip(np.minimum(wanted, sizes - 1), 0, None)


def select_heldout(labels, *, per_cluster: int | None = None, fraction: float | None = None,
                   seed: int = 0) -> HeldoutSelection:
    """The held-out documents of a clustering (``labels``: the cluster of each doc_id), stratified by
    cluster and seeded (see the module docstring). Vectorised: one permutation and one sort."""
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if len(labels) else 0
    sizes = np.bincount(labels, minlength=k)
    counts = heldout_counts(sizes, per_cluster=per_cluster, fraction=fraction)
    keys = np.random.default_rng(seed).permutation(len(labels))  # a document's rank in the seeded order
    order = np.lexsort((keys, labels))  # by cluster, then by rank: each cluster's documents in seeded order
    starts = np.cumsum(sizes) - sizes
    rank_in_cluster = np.arange(len(labels)) - np.repeat(starts, sizes)
    chosen = order[rank_in_cluster < np.repeat(counts, sizes)]
    doc_id = np.sort(chosen)
    return HeldoutSelection(doc_id=doc_id, cluster=labels[doc_id].astype(np.int32), per_cluster=counts,
                            unscored=np.flatnonzero((sizes > 0) & (counts == 0)))


# --------------------------------------------------------------------------- target texts
def target_texts(path: str | os.PathLike, text_column: str = "text") -> list[str]:
    """The texts of a ``--target`` file (JSON lines, Parquet; ``.gz``/``.zst``), read by the corpus readers;
    empty rows are skipped as ``embed`` skips them. A one-line error if it holds none."""
    from ..readers import iter_documents, reader_for

    p = Path(path)
    if not p.is_file():
        raise InputError(f"--target {p}: no such file; give a JSON lines or Parquet file of texts")
    reader = reader_for(p)
    reader.check(text_column, None)
    texts = [text for _, _, text, _ in iter_documents([reader], text_column)]
    if not texts:
        raise InputError(f"--target {p}: holds no text in column {text_column!r}; give at least one document")
    return texts


# --------------------------------------------------------------------------- tokens
def schedule_tokenizer(sched):
    """The tokenizer of a schedule directory with its delimiters, loaded as ``schedule`` loaded it, and checked to
    be the one the schedule recorded (a one-line error when the file changed since)."""
    from types import SimpleNamespace

    from ..errors import MismatchError
    from ..tokens.tokenizer import load_with_delimiters

    recorded = sched.settings
    if not recorded.get("tokenizer"):
        raise InputError(f"{sched.path}: written without --tokenizer, so it has no tokens; rerun `clusterclip "
                         f"schedule` with --tokenizer")
    names = ("tokenizer", "eos_token", "bos_token", "convention", "allow_ordinary_delimiter")
    tok = load_with_delimiters(SimpleNamespace(**{n: recorded.get(n) for n in names}))
    if tok.describe(with_backend=False) != recorded.get("tokenizer_digest"):
        raise MismatchError(f"{sched.path}: its tokenizer {recorded['tokenizer']} is not the one it was written with "
                            f"(the file changed since); restore it or rerun `clusterclip schedule`")
    return tok


def tokenize_heldout(texts: Sequence[str], tokenizer, path: str | os.PathLike, *, progress: bool = False,
                     workers: int | None = 1):
    """Tokenize the held-out texts (the corpus documents in ``doc_id`` order, then the target texts) once into a
    token store at ``path``, keyed by their place in that list (0..len-1). Reused when it is already there."""
    from ..tokens.build import build_token_store

    def numbered() -> Iterator[tuple[int, str]]:
        return enumerate(texts)

    return build_token_store(numbered, len(texts), tokenizer, path, progress=progress, total=len(texts),
                             workers=workers)


def heldout_samples(store, ids, *, bos_id: int | None, eos_id: int | None) -> list[np.ndarray]:
    """Each document of ``ids`` as a trainer sees it: ``[BOS] + tokens + [EOS]`` (the delimiters that are not
    None), int64, one array per document."""
    flat, sizes = store.gather(np.asarray(ids, dtype=np.int64), eos_id, np.int64, bos_id=bos_id)
    return np.split(flat, np.cumsum(sizes)[:-1]) if len(sizes) else []
