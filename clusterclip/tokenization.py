"""LLM tokenizers for the token shards: load one, find its EOS, encode in parallel batches.

``load_tokenizer(spec)`` accepts a ``tokenizer.json`` file, a local Hugging Face tokenizer
directory or a hub name. Encoding adds no special tokens. Special-token strings that
happen to occur inside a document (say a literal ``<|endoftext|>`` in a web page) are
encoded as plain text, so the EOS id appears in the shards only where clusterclip puts it:
at the end of each sample.

Encoding runs on the Rust ``tokenizers`` library (the reference) or, where the tokenizer is
a byte-level BPE of a known pre-tokenizer family, on a faster exact backend
(:mod:`clusterclip.fast_tokenizer`); ``Tokenizer.backend`` says which ("gigatoken" or
"hf") and ``describe()`` records it. The token store verifies the fast backend against the
reference on a sample of every run's documents and falls back on any difference. Long
documents are encoded in pieces cut where the pre-tokenizer provably restarts, so one huge
document costs bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .artifacts import sha256_file
from .errors import InputError
from .fast_tokenizer import HF_BACKEND, Encoder, EncoderPlan, plan_encoder

#: EOS spellings looked for, in this order, when the tokenizer's config names none.
EOS_CANDIDATES = (
    "<|endoftext|>",
    "</s>",
    "<|end_of_text|>",
    "<|eot_id|>",
    "<eos>",
    "<|im_end|>",
    "<|end|>",
    "[EOS]",
    "<EOS>",
    "<|eos|>",
)


class Tokenizer:
    """A loaded tokenizer with the few things the shard writer needs.

    Attributes: ``spec`` (what the user gave), ``eos_id``, ``eos_token``, ``vocab_size``
    (largest id + 1, added tokens included), ``backend`` (what encodes: "gigatoken" or
    "hf") and ``fast_off`` (why the fast backend does not run, or None).
    """

    def __init__(self, backend, spec: str, *, kind: str, eos_token: str | None, file_sha256: str | None,
                 path: str | None, hf_tokenizer=None, require_eos: bool = True, fast: bool = True):
        self._tok = backend  # tokenizers.Tokenizer, or None for a slow HF tokenizer
        self._hf = hf_tokenizer
        self.spec = spec
        self.kind = kind
        self.path = path
        self._file_sha256 = file_sha256
        vocab = self._vocab()
        self.vocab_size = (max(vocab.values()) + 1) if vocab else 0
        try:
            self.eos_token, self.eos_id = self._resolve_eos(eos_token, vocab)
        except InputError:
            if require_eos:
                raise
            self.eos_token, self.eos_id = None, None
        if self._tok is not None:
            self._tok.no_truncation()
            self._tok.no_padding()
            try:  # special-token strings inside documents are plain text (tokenizers >= 0.15)
                self._tok.encode_special_tokens = True
            except AttributeError:  # pragma: no cover - old tokenizers
                pass
        self._fast_wanted = fast
        self._plan_cache: EncoderPlan | None = None  # made on first use (decoding needs none)
        self._encoder_cache: Encoder | None = None

    @property
    def _plan(self) -> EncoderPlan | None:
        if self._plan_cache is None and self._tok is not None:
            self._plan_cache = plan_encoder(self._tok.to_str(), fast=self._fast_wanted)
        return self._plan_cache

    @_plan.setter
    def _plan(self, plan: EncoderPlan) -> None:
        self._plan_cache = plan

    @property
    def backend(self) -> str:
        """What encodes: "gigatoken" (the fast exact backend) or "hf" (Hugging Face)."""
        return self._plan.backend if self._plan is not None else HF_BACKEND

    @property
    def fast_off(self) -> str | None:
        """Why the fast backend does not encode (one line), or None when it does."""
        return self._plan.fast_off if self._plan is not None else "a slow (Python) transformers tokenizer"

    def encoder_plan(self) -> EncoderPlan | None:
        """The plan worker processes build their encoder from (None: this process only)."""
        return self._plan

    def disable_fast(self, reason: str) -> None:
        """Encode with Hugging Face from now on (``reason``: one line for ``fast_off``)."""
        if self._plan is not None and self._plan.fast_json is not None:
            self._plan = self._plan.without_fast(reason)
            self._encoder_cache = None

    def encoder(self) -> Encoder:
        """This process's encoder (built once; raises for a slow transformers tokenizer)."""
        if self._plan is None:
            raise TypeError(f"{self.spec}: a slow transformers tokenizer has no Encoder; use encode_batch")
        if self._encoder_cache is None:
            self._encoder_cache = Encoder(self._plan)
        return self._encoder_cache

    # ------------------------------------------------------------------ vocabulary
    def _vocab(self) -> dict[str, int]:
        if self._tok is not None:
            return self._tok.get_vocab(with_added_tokens=True)
        return dict(self._hf.get_vocab())

    def _token_to_id(self, token: str) -> int | None:
        if self._tok is not None:
            return self._tok.token_to_id(token)
        return self._vocab().get(token)

    def _resolve_eos(self, eos_token: str | None, vocab: dict[str, int]) -> tuple[str, int]:
        """The EOS: ``eos_token`` (a token or an id) if given, else the configured one, else a known spelling."""
        if eos_token is not None:
            tid = vocab.get(eos_token)
            if tid is None and eos_token.strip().isdigit() and int(eos_token) < self.vocab_size:
                tid = int(eos_token)
                inv = {v: k for k, v in vocab.items()}
                return inv.get(tid, eos_token), tid
            if tid is None:
                raise InputError(
                    f"--eos-token {eos_token!r}: not a token of {self.spec}; name one of its tokens "
                    f"(e.g. {_example_specials(vocab)}) or a token id"
                )
            return eos_token, int(tid)
        configured = self._configured_eos()
        for cand in ([configured] if configured else []) + list(EOS_CANDIDATES):
            tid = vocab.get(cand)
            if tid is not None:
                return cand, int(tid)
        raise InputError(
            f"{self.spec}: this tokenizer has no EOS token; name the token that ends each sample with "
            f"--eos-token (e.g. {_example_specials(vocab)})"
        )

    def _configured_eos(self) -> str | None:
        if self._hf is not None and getattr(self._hf, "eos_token", None):
            return str(self._hf.eos_token)
        if self.path:
            p = Path(self.path)
            cfg = (p if p.is_dir() else p.parent) / "tokenizer_config.json"
            if cfg.is_file():
                try:
                    value = json.loads(cfg.read_text("utf-8")).get("eos_token")
                except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                    value = None
                if isinstance(value, dict):
                    value = value.get("content")
                if isinstance(value, str) and value:
                    return value
        return None

    # ------------------------------------------------------------------ encoding
    def encode_batch(self, texts: Sequence[str], *, parallel: bool = True) -> list[list[int]]:
        """Token ids of each text, no special tokens added; over all cores unless ``parallel=False``."""
        texts = list(texts)
        if self._plan is not None:
            return self.encoder().encode_lists(texts, parallel=parallel)
        out = self._hf(texts, add_special_tokens=False, return_attention_mask=False,
                       split_special_tokens=True, verbose=False)
        return [list(x) for x in out["input_ids"]]

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        if self._tok is not None:
            return self._tok.decode(ids, skip_special_tokens=False)
        return self._hf.decode(ids, skip_special_tokens=False)

    # ------------------------------------------------------------------ identity
    def digest(self) -> str:
        """sha256 of the tokenizer: of ``tokenizer.json`` when there is one, else of its serialisation."""
        if self._file_sha256:
            return self._file_sha256
        if self._tok is not None:
            return hashlib.sha256(self._tok.to_str().encode("utf-8")).hexdigest()
        vocab = sorted(self._vocab().items(), key=lambda kv: kv[1])
        return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()

    def describe(self, *, with_backend: bool = True) -> dict[str, Any]:
        """A stable record of this tokenizer for manifests (no timestamps).

        ``backend`` (with ``with_backend``) is the encoder that runs; both produce the same
        tokens, so records that identify the tokens (a job's settings, a token store) leave
        it out with ``with_backend=False``.
        """
        rec = {
            "spec": self.spec,
            "kind": self.kind,
            "path": self.path,
            "sha256": self.digest(),
            "vocab_size": self.vocab_size,
            "eos_token": self.eos_token,
            "eos_id": self.eos_id,
        }
        if with_backend:
            rec["backend"] = self.backend
        return rec

    def __repr__(self) -> str:
        return f"Tokenizer({self.spec!r}, vocab_size={self.vocab_size}, eos={self.eos_token!r}:{self.eos_id})"


def _example_specials(vocab: dict[str, int]) -> str:
    specials = [t for t in vocab if t.startswith("<") and t.endswith(">") and len(t) <= 24][:3]
    return ", ".join(repr(t) for t in specials) if specials else "'<|endoftext|>'"


def load_tokenizer(spec: str | os.PathLike, eos_token: str | None = None, *, require_eos: bool = True,
                   fast: bool = True) -> Tokenizer:
    """Load ``spec``: a ``tokenizer.json`` file, a local HF tokenizer directory, or a hub name.

    ``eos_token`` names the token appended after every document (a token string, or an id
    when no token is spelled that way); by default it is the tokenizer's own EOS.
    Raises :class:`~clusterclip.errors.InputError` (one line) when it cannot be loaded or
    has no EOS token and ``eos_token`` does not name one (unless ``require_eos=False``:
    then ``eos_id`` is None, enough to decode). ``fast=False`` keeps encoding on Hugging
    Face ``tokenizers`` even where the fast backend applies.
    """
    from tokenizers import Tokenizer as RustTokenizer

    spec_str = str(spec)
    p = Path(spec_str).expanduser()
    if p.is_file():
        try:
            backend = RustTokenizer.from_file(str(p))
        except Exception as e:  # noqa: BLE001 - the tokenizers library raises plain Exceptions
            raise InputError(
                f"{p}: not a tokenizers `tokenizer.json` ({_first_line(e)}); give a tokenizer.json, "
                f"a Hugging Face tokenizer directory or a hub name"
            ) from None
        return Tokenizer(backend, spec_str, kind="file", eos_token=eos_token, file_sha256=sha256_file(p),
                         path=str(p.resolve()), require_eos=require_eos, fast=fast)
    if p.is_dir():
        tj = p / "tokenizer.json"
        if tj.is_file():
            try:
                backend = RustTokenizer.from_file(str(tj))
            except Exception as e:  # noqa: BLE001
                raise InputError(f"{tj}: unreadable tokenizer ({_first_line(e)}); check the directory") from None
            return Tokenizer(backend, spec_str, kind="dir", eos_token=eos_token, file_sha256=sha256_file(tj),
                             path=str(p.resolve()), require_eos=require_eos, fast=fast)
        return _from_transformers(spec_str, str(p.resolve()), "dir", eos_token, require_eos, fast)
    looks_local = spec_str.endswith(".json") or spec_str.startswith((".", "/", "~")) or spec_str.count("/") > 1
    if looks_local:
        raise InputError(f"{spec_str}: no such tokenizer file or directory; check --tokenizer")
    return _from_transformers(spec_str, None, "hub", eos_token, require_eos, fast)


def _from_transformers(spec: str, path: str | None, kind: str, eos_token: str | None,
                       require_eos: bool = True, fast: bool = True) -> Tokenizer:
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(path or spec)
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, HTTP errors...
        where = "directory" if path else "hub name"
        raise InputError(
            f"{spec}: cannot load this tokenizer {where} ({_first_line(e)}); give a local tokenizer.json, "
            f"a Hugging Face tokenizer directory, or a hub name that is cached or reachable"
        ) from None
    backend = getattr(hf, "backend_tokenizer", None) if getattr(hf, "is_fast", False) else None
    return Tokenizer(backend, spec, kind=kind, eos_token=eos_token, file_sha256=None, path=path,
                     hf_tokenizer=hf, require_eos=require_eos, fast=fast)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
