"""A second encoder backend: a sentence-transformers model, as its authors configured it.

Pooling (mean, CLS, last token...), a ``Normalize`` module and prompts come from the model's
own ``modules.json`` / ``config_sentence_transformers.json``; ``--prompt-name`` picks one of
its prompts (default: the model's ``default_prompt_name``, if any). The vectors are
L2-normalised like every embed output. Needs the ``sentence-transformers`` package
(``pip install clusterclip[st]``).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError, first_line
from .encoder import Prepared, resolve_device, resolve_dtype, resolve_model

DEFAULT_BATCH_SIZE = 64


class SentenceTransformersEncoder:
    def __init__(self, model=None, *, max_length: int = 256, device: str = "auto", dtype: str = "auto",
                 batch_size: int | None = None, prompt_name: str | None = None, trust_remote_code: bool = False):
        try:
            import sentence_transformers  # noqa: F401
        except ImportError:
            raise InputError("--encoder sentence-transformers: needs the sentence-transformers package; "
                             "`pip install clusterclip[st]` or use --encoder hf") from None
        self.load_path, self.model_name = resolve_model(model)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size) if batch_size else DEFAULT_BATCH_SIZE
        self.prompt_name = prompt_name
        self._trust_remote_code = trust_remote_code
        self._model_arg = model
        st = self._st
        if prompt_name is not None and prompt_name not in (st.prompts or {}):
            known = ", ".join(sorted(st.prompts or {})) or "none"
            raise InputError(f"--prompt-name {prompt_name}: not a prompt of {self.model_name} (its prompts: {known}); "
                             f"leave it out or name one of them")
        dimension = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        self.dim = int(dimension() or 0)

    @classmethod
    def from_settings(cls, s) -> "SentenceTransformersEncoder":
        return cls(s.model, max_length=s.max_length, device=s.device, dtype=s.dtype, batch_size=s.batch_size,
                   prompt_name=s.prompt_name, trust_remote_code=s.trust_remote_code)

    @functools.cached_property
    def _st(self):
        import torch
        from sentence_transformers import SentenceTransformer

        try:
            st = SentenceTransformer(self.load_path, device=self.device, trust_remote_code=self._trust_remote_code,
                                     model_kwargs={"torch_dtype": getattr(torch, self.dtype)})
        except Exception as e:  # noqa: BLE001 - OSError, ValueError...
            raise InputError(f"--model {self._model_arg}: cannot load it with sentence-transformers "
                             f"({first_line(e)}); check the model directory") from None
        st.max_seq_length = self.max_length
        return st

    @property
    def settings(self) -> dict:
        pooling = [type(m).__name__ for m in self._st]
        return {
            "backend": "sentence-transformers",
            "model": self.model_name,
            "max_length": self.max_length,
            "modules": pooling,
            "prompt_name": self.prompt_name or self._st.default_prompt_name,
            "normalize": "l2",
            "device": "cuda" if self.device.startswith("cuda") else self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
        }

    def prepare(self, texts: Sequence[str]) -> Prepared:
        # bounded memory: the first max_length tokens never need more than 64 characters per token
        clip = max(4096, 64 * self.max_length)
        texts = [t if len(t) <= clip else t[:clip] for t in texts]
        # one token past the limit tells whether a document is truncated, without tokenizing all of it
        enc = self._st.tokenizer(list(texts), truncation=True, max_length=self.max_length + 1,
                                 add_special_tokens=True, return_attention_mask=False, verbose=False)["input_ids"]
        lengths = [len(ids) for ids in enc]
        flags = [n > self.max_length for n in lengths]
        return Prepared(list(texts), [min(n, self.max_length) for n in lengths], sum(flags), flags)

    def embed(self, prepared: Prepared, on_progress: Callable[[float], None] | None = None) -> np.ndarray:
        if not prepared.items:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = self._st.encode(prepared.items, batch_size=self.batch_size, prompt_name=self.prompt_name,
                            convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False)
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            out = (x / norms).astype(np.float32)
        out[~np.isfinite(norms[:, 0]) | (norms[:, 0] <= 1e-12)] = np.nan
        if on_progress is not None:
            on_progress(1.0)
        return out


ENCODER = SentenceTransformersEncoder
