"""A static encoder (``--encoder model2vec``): the mean of a model2vec model's token vectors, L2-normalised.

No transformer runs: a document's vector is the mean of the static vectors of its first
``--max-length`` tokens (``--long-docs chunk-mean``: of all its tokens), without the special
tokens, as ``model2vec.StaticModel.encode`` computes it (tokens of ``[UNK]`` dropped unless a
document has nothing else), then L2-normalised. Hundreds of times faster than the transformer
on a CPU (docs/PERFORMANCE.md), at the cost of a coarser clustering (measured there and in
the README).

The model (``--model DIR``) is any model2vec model directory (``model.safetensors`` +
``tokenizer.json``, loaded with the ``model2vec`` package); ``clusterclip distill --out DIR``
makes one from a transformer encoder, offline (:mod:`.distill`). Without ``--model`` the default
static model is the default transformer (all-MiniLM-L6-v2) distilled with the default settings
into the cache, ``$CLUSTERCLIP_CACHE/static/all-MiniLM-L6-v2`` (``$CLUSTERCLIP_CACHE`` defaults to
``$XDG_CACHE_HOME/clusterclip``, else ``~/.cache/clusterclip``): the first run that needs it
distills it there once (about a minute on two CPU cores; ``clusterclip distill --out`` that path
does it ahead). Nothing is ever downloaded. A directory made by ``distill`` is verified against
its manifest (sha256 of every file) before it is used.

The vectors depend on the document alone (no batching), so partitions, parts, resume and
merge give the same bytes as with every encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..artifacts.directory import ArtifactDir
from ..artifacts.files import sha256_file
from ..artifacts.manifest import MANIFEST
from ..cache import CACHE_ENV, cache_root  # noqa: F401 - the one cache root (clusterclip.cache)
from ..errors import InputError, first_line
from .batching import encode_prefixes, split_text
from .distill import MODEL_FILE, TOKENIZER_FILE
from .encoder import DEFAULT_MODEL_NAME, Prepared, normalise_rows

DEFAULT_STATIC_NAME = f"{DEFAULT_MODEL_NAME} distilled (clusterclip distill defaults)"
#: the longest prefix of a document ``truncate`` ever tokenizes (characters)
MAX_PREFIX_CHARS = 1 << 20
#: ``chunk-mean`` tokenizes documents in pieces of this many characters
PIECE_CHARS = 1 << 16
#: tokens gathered at once when summing vectors (bounded memory: this × dim × 8 bytes)
GATHER_TOKENS = 1 << 16


def default_static_path() -> Path:
    """Where the default static model lives (distilled there on first use)."""
    return cache_root() / "static" / "all-MiniLM-L6-v2"


class StaticModelDir(ArtifactDir):
    """A finished ``clusterclip distill`` directory: manifest checked, every file's sha256 verified."""

    step = "distill"


def resolve_static_model(model, log: Callable[[str], None] | None = None) -> tuple[Path, str]:
    """``(directory, what the manifest records)`` for ``--model`` of ``--encoder model2vec``."""
    if model is None or str(model) in ("", "default", DEFAULT_STATIC_NAME):
        path = default_static_path()
        if not (path / MANIFEST).is_file():
            from ..progress import progress_enabled
            from .distill import distill_static_model

            (log or (lambda message: None))(f"embed: distilling the default static model once into {path} (no download; "
                f"`clusterclip distill --out {path}` does it ahead, ${CACHE_ENV} moves it)")
            distill_static_model(path, log=log, progress=progress_enabled(True))
        return path, DEFAULT_STATIC_NAME
    p = Path(str(model)).expanduser()
    if not p.is_dir() or not (p / MODEL_FILE).is_file() or not (p / TOKENIZER_FILE).is_file():
        raise InputError(f"--model {model}: not a model2vec model directory ({MODEL_FILE} and {TOKENIZER_FILE}); "
                         f"make one with `clusterclip distill --out DIR`, or leave --model out for the default")
    return p.resolve(), str(p.resolve())


class StaticEncoder:
    """A model2vec static model: mean of token vectors, L2-normalised (see the module docstring)."""

    def __init__(self, model=None, *, max_length: int = 256, long_docs: str = "truncate",
                 log: Callable[[str], None] | None = None):
        from tokenizers import Tokenizer

        self.path, self.model_name = resolve_static_model(model, log)
        if (self.path / MANIFEST).is_file():
            StaticModelDir(self.path, verify=True)  # ours: every file checked before it is used
        try:
            from model2vec import StaticModel

            static = StaticModel.from_pretrained(self.path, force_download=False)
        except Exception as e:  # noqa: BLE001 - model2vec raises what its readers raise
            raise InputError(f"--model {model}: model2vec cannot load it ({first_line(e)}); check the directory or "
                             f"make it again with `clusterclip distill`") from None
        self.vectors = np.asarray(static.embedding, dtype=np.float32)
        self.weights = None if static.weights is None else np.asarray(static.weights, dtype=np.float32)
        self.mapping = None if static.token_mapping is None else np.asarray(static.token_mapping, dtype=np.int64)
        self.unk_id = static.unk_token_id
        self.dim = int(self.vectors.shape[1])
        self.max_length = int(max_length)
        self.long_docs = long_docs
        self.model_sha256 = sha256_file(self.path / MODEL_FILE)
        self.tokenizer = Tokenizer.from_str(static.tokenizer.to_str())  # a private copy: truncation is ours
        self.tokenizer.no_padding()
        if long_docs == "chunk-mean":
            self.tokenizer.no_truncation()
        else:
            self.tokenizer.enable_truncation(self.max_length)
        # a prefix of 5 characters a token covers --max-length for most text (and is grown until it provably
        # does, batching.prefix_is_enough): tokenizing is most of this encoder's time, so no more than that
        self.clip_chars = max(256, 5 * self.max_length)

    @classmethod
    def from_settings(cls, s) -> "StaticEncoder":
        return cls(s.model, max_length=s.max_length, long_docs=s.long_docs)

    @property
    def settings(self) -> dict:
        """What runs, resolved (recorded in the manifest)."""
        return {"backend": "model2vec", "model": self.model_name, "model_sha256": self.model_sha256,
                "max_length": self.max_length, "long_docs": self.long_docs, "pooling": "mean", "normalize": "l2",
                "device": "cpu", "dtype": "float32"}

    # ----------------------------------------------------------------- tokenization (reader thread)
    def prepare(self, texts: Sequence[str]) -> Prepared:
        """Token ids per document, without special tokens (``[UNK]`` dropped unless it is all there is)."""
        if self.long_docs == "chunk-mean":
            items = [[self._ids(np.concatenate([e.ids for e in self.tokenizer.encode_batch(
                split_text(t, PIECE_CHARS), add_special_tokens=False)]))] for t in texts]
            return Prepared(items, [len(i[0]) for i in items], 0, [False] * len(items))
        encs = encode_prefixes(self.tokenizer, texts, self.clip_chars, MAX_PREFIX_CHARS, add_special_tokens=False)
        items = [[self._ids(e.ids)] for e in encs]
        flags = [bool(e.overflowing) for e in encs]
        return Prepared(items, [len(i[0]) for i in items], sum(flags), flags)

    def _ids(self, ids) -> np.ndarray:
        a = np.asarray(ids, dtype=np.int32)
        if self.unk_id is not None:
            known = a[a != self.unk_id]
            if len(known):
                a = known
        return a

    # ----------------------------------------------------------------- vectors
    def embed(self, prepared: Prepared, on_progress: Callable[[float], None] | None = None) -> np.ndarray:
        """float32 ``[n, dim]``: the L2-normalised mean of each document's token vectors (NaN: no token)."""
        ids = [i[0] for i in prepared.items]
        n = len(ids)
        sums: np.ndarray = np.zeros((n, self.dim), dtype=np.float64)
        counts = np.fromiter((len(i) for i in ids), dtype=np.float64, count=n)
        lo = 0
        while lo < n:  # documents in groups of about GATHER_TOKENS tokens: bounded memory
            hi, tokens = lo, 0
            while hi < n and (hi == lo or tokens + len(ids[hi]) <= GATHER_TOKENS):
                tokens += len(ids[hi])
                hi += 1
            sums[lo:hi] = self._sums(ids[lo:hi])
            lo = hi
            if on_progress is not None:
                on_progress(lo / n)
        return normalise_rows(sums, counts)

    def _sums(self, ids: list[np.ndarray]) -> np.ndarray:
        flat = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32)
        rows = self.vectors[flat if self.mapping is None else self.mapping[flat]]
        if self.weights is not None:
            rows = rows * self.weights[flat][:, None]
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        out: np.ndarray = np.zeros((len(ids), self.dim), dtype=np.float64)
        nonempty = lengths > 0
        if nonempty.any():
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[nonempty]
            out[nonempty] = np.add.reduceat(rows, starts, axis=0, dtype=np.float64)
        return out

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed strings held in memory; float32 ``[n, dim]``, L2-normalised, input order."""
        return self.embed(self.prepare(list(texts)))


ENCODER = StaticEncoder
