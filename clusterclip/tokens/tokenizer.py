"""LLM tokenizers for the token shards: load one, find its EOS, encode in parallel batches.

``load_tokenizer(spec)`` accepts a ``tokenizer.json`` file, a local Hugging Face tokenizer
directory or a hub name. Encoding adds no special tokens. Special-token strings that
happen to occur inside a document (say a literal ``<|endoftext|>`` in a web page) are
encoded as plain text, so the EOS id appears in the shards only where clusterclip puts it:
at the end of each sample.

Encoding runs on the Rust ``tokenizers`` library (the reference) or, where the tokenizer is
a byte-level BPE of a known pre-tokenizer family, on a faster exact backend
(:mod:`clusterclip.tokens.fast`); ``Tokenizer.backend`` says which ("gigatoken" or
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

from ..artifacts import sha256_file
from ..errors import InputError
from ..remote import refuse_remote
from ..settings import Rule
from .fast import HF_BACKEND, EncoderPlan, TokenEncoder, plan_encoder

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

class _TokenizerEos:
    """The type of :data:`TOKENIZER_EOS`."""


#: stands for "the tokenizer's own EOS token" in :data:`CONVENTIONS`
TOKENIZER_EOS = _TokenizerEos()
#: a delimiter as a convention names it: a token, the tokenizer's EOS, or none
Delimiter = str | _TokenizerEos | None

#: ``--convention NAME`` -> (BOS, EOS) around every document; ``"none"``: no EOS
CONVENTIONS: dict[str, tuple[Delimiter, Delimiter]] = {
    # EOS after each document (the default): prepare.py of nanoGPT, Megatron --append-eod, OLMo-core,
    # datatrove/nanotron, Hugging Face and LLM Foundry's concat_tokens
    "eos-after": (None, TOKENIZER_EOS),
    "megatron": (None, TOKENIZER_EOS),
    "hf": (None, TOKENIZER_EOS),
    "nanogpt": (None, TOKENIZER_EOS),
    "olmo-core": (None, TOKENIZER_EOS),
    "nanotron": (None, TOKENIZER_EOS),
    "mosaicml": (None, TOKENIZER_EOS),
    # the end-of-text token BEFORE each document, nothing after: llm.c's dev/data scripts and
    # modded-nanogpt (whose align_to_bos starts every sequence at that token)
    "llm.c": (TOKENIZER_EOS, "none"),
    "modded-nanogpt": (TOKENIZER_EOS, "none"),
}

#: ``--convention NAME`` -> (the most token ids its trainer's loader reads, why): modded-nanogpt's
#: ``_load_data_shard`` asserts ``header[1] == 1`` (llm.c version 1 files, uint16 tokens)
CONVENTION_MAX_VOCAB: dict[str, tuple[int, str]] = {
    "modded-nanogpt": (1 << 16, "its loader reads only version 1 bin files (uint16 tokens)"),
}


class Tokenizer:
    """A loaded tokenizer with the few things the shard writer needs.

    Attributes: ``spec`` (what the user gave), ``eos_id``, ``eos_token``, ``vocab_size``
    (largest id + 1, added tokens included), ``backend`` (what encodes: "gigatoken" or
    "hf") and ``fast_off`` (why the fast backend does not run, or None).
    """

    def __init__(self, backend, spec: str, *, kind: str, eos_token: str | None, file_sha256: str | None,
                 path: str | None, hf_tokenizer=None, require_eos: bool = True, fast: bool = True,
                 json_text: str | None = None):
        self._tok = backend  # tokenizers.Tokenizer, or None for a slow HF tokenizer
        # the tokenizer.json as written (its serialisation by tokenizers forgets that a content listed both
        # special and not is special): what the encoders are built from
        self._json_text = json_text
        self._hf = hf_tokenizer
        self.spec = spec
        self.kind = kind
        self.path = path
        self._file_sha256 = file_sha256
        vocab = self._vocab()
        self.vocab_size = (max(vocab.values()) + 1) if vocab else 0
        self.bos_token: str | None = None
        self.bos_id: int | None = None
        self.eos_token: str | None = None
        self.eos_id: int | None = None
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
        self._encoder_cache: TokenEncoder | None = None

    @property
    def _plan(self) -> EncoderPlan | None:
        if self._plan_cache is None and self._tok is not None:
            json_text = self._json_text if self._json_text is not None else self._tok.to_str()
            self._plan_cache = plan_encoder(json_text, fast=self._fast_wanted, hf=self._tok)
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

    @property
    def backend_reason(self) -> str:
        """Why :attr:`backend` encodes (one line, for the manifest)."""
        if self.fast_off is None:
            return f"in the fast path's allow-list ({self._plan.family} family)" if self._plan is not None else ""
        return f"fast path off: {self.fast_off}"

    def encoder_plan(self) -> EncoderPlan | None:
        """The plan worker processes build their encoder from (None: this process only)."""
        return self._plan

    def disable_fast(self, reason: str) -> None:
        """Encode with Hugging Face from now on (``reason``: one line for ``fast_off``)."""
        if self._plan is not None and self._plan.fast_json is not None:
            self._plan = self._plan.without_fast(reason)
            self._encoder_cache = None

    def encoder(self) -> TokenEncoder:
        """This process's encoder (built once; raises for a slow transformers tokenizer)."""
        if self._plan is None:
            raise TypeError(f"{self.spec}: a slow transformers tokenizer has no TokenEncoder; use encode_batch")
        if self._encoder_cache is None:
            self._encoder_cache = TokenEncoder(self._plan, hf=self._tok)
        return self._encoder_cache

    # ------------------------------------------------------------------ vocabulary
    def _vocab(self) -> dict[str, int]:
        if self._tok is not None:
            return self._tok.get_vocab(with_added_tokens=True)
        return dict(self._hf.get_vocab())

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
                    f"(e.g. {_example_specials(vocab, self._special_ids())}) or a token id"
                )
            return eos_token, int(tid)
        configured = self._configured_eos()
        for cand in ([configured] if configured else []) + list(EOS_CANDIDATES):
            tid = vocab.get(cand)
            if tid is not None:
                return cand, int(tid)
        raise InputError(
            f"{self.spec}: this tokenizer has no EOS token; name the token that ends each sample with "
            f"--eos-token (e.g. {_example_specials(vocab, self._special_ids())})"
        )

    # ------------------------------------------------------------------ document delimiters
    def set_delimiters(self, *, eos_token: Delimiter = None, bos_token: Delimiter = None,
                       convention: str | None = None, allow_ordinary_delimiter: bool = False) -> None:
        """Choose the tokens put before (BOS) and after (EOS) every document in the shards.

        ``eos_token``: a token or an id; ``"none"`` for no EOS; default the tokenizer's EOS.
        ``bos_token``: a token or an id; default none. ``convention``: a name of
        :data:`CONVENTIONS` instead of the two (e.g. ``llm.c``: the tokenizer's EOS before each
        document, nothing after). Each delimiter must be a special token of the tokenizer (an
        ordinary word also occurs inside documents, so sample boundaries could not be found
        again) unless ``allow_ordinary_delimiter``. Raises a one-line ``InputError``.
        """
        if convention is not None:
            check_convention(convention, bos_token, eos_token)  # the checks of ScheduleSettings
            bos_token, eos_token = CONVENTIONS[convention]
            self._check_convention_vocab(convention)
        vocab = self._vocab()
        if isinstance(eos_token, str) and eos_token.strip().lower() == "none":
            self.eos_token, self.eos_id = None, None
        else:
            self.eos_token, self.eos_id = self._resolve_eos(None if isinstance(eos_token, _TokenizerEos) else eos_token,
                                                            vocab)
        if bos_token is None:
            self.bos_token, self.bos_id = None, None
        elif isinstance(bos_token, _TokenizerEos):
            self.bos_token, self.bos_id = self._resolve_eos(None, vocab)
        else:
            self.bos_token, self.bos_id = self._resolve_token(bos_token, vocab, "--bos-token")
        if not allow_ordinary_delimiter:
            special = self._special_ids()
            for opt, tok, tid in (("--eos-token", self.eos_token, self.eos_id),
                                  ("--bos-token", self.bos_token, self.bos_id)):
                if tid is not None and tid not in special:
                    raise InputError(
                        f"{opt} {tok!r}: an ordinary token of {self.spec}, which also occurs inside documents; "
                        f"name a special token (e.g. {_example_specials(vocab, special)}) or pass "
                        f"--allow-ordinary-delimiter")

    def _check_convention_vocab(self, convention: str) -> None:
        """A vocabulary larger than the convention's trainer reads (:data:`CONVENTION_MAX_VOCAB`) is refused."""
        if convention not in CONVENTION_MAX_VOCAB:
            return
        most, why = CONVENTION_MAX_VOCAB[convention]
        if self.vocab_size > most:
            raise InputError(f"--convention {convention}: {self.spec} has {self.vocab_size:,} token ids but "
                             f"{convention} reads at most {most:,} ({why}); use a tokenizer of at most {most:,} "
                             f"ids, or --convention llm.c for llm.c's Llama-3 branch (version 7, uint32 tokens)")

    def _resolve_token(self, token: str, vocab: dict[str, int], option: str) -> tuple[str, int]:
        tid = vocab.get(token)
        if tid is None and token.strip().isdigit() and int(token) < self.vocab_size:
            tid = int(token)
            return {v: k for k, v in vocab.items()}.get(tid, token), tid
        if tid is None:
            raise InputError(f"{option} {token!r}: not a token of {self.spec}; name one of its special tokens "
                             f"(e.g. {_example_specials(vocab, self._special_ids())}) or a token id")
        return token, int(tid)

    def _special_ids(self) -> set[int]:
        """Ids of the tokenizer's special tokens (never produced from document text here)."""
        if self._tok is not None:
            try:
                return {int(i) for i, t in self._tok.get_added_tokens_decoder().items() if t.special}
            except AttributeError:  # pragma: no cover - tokenizers < 0.14
                return set()
        ids = set(getattr(self._hf, "all_special_ids", []) or [])
        for i, t in (getattr(self._hf, "added_tokens_decoder", None) or {}).items():
            if getattr(t, "special", False):
                ids.add(int(i))
        return ids

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
            "bos_token": self.bos_token,
            "bos_id": self.bos_id,
        }
        if with_backend:
            rec["backend"] = self.backend
        return rec

    def __repr__(self) -> str:
        return f"Tokenizer({self.spec!r}, vocab_size={self.vocab_size}, eos={self.eos_token!r}:{self.eos_id})"


#: words that mark a special token as one that ends a sample (the first suggested for --eos-token)
_END_WORDS = ("eos", "end", "eot", "</s>", "sep")


def _example_specials(vocab: dict[str, int], special_ids: set[int] | None = None) -> str:
    """Up to three tokens to suggest, the ones that look like an end of sample first: the tokenizer's
    special tokens, else tokens spelled like one (``<...>`` with a letter inside, so never ``'<>'``)."""
    inv = {v: k for k, v in vocab.items()}
    specials = [inv[i] for i in sorted(special_ids or ()) if i in inv]
    if not specials:
        specials = [t for t in vocab if len(t) >= 3 and t.startswith("<") and t.endswith(">") and len(t) <= 32
                    and any(c.isalpha() for c in t)]

    def rank(token: str) -> tuple[int, int]:
        lower = token.lower()
        return (0 if any(w in lower for w in _END_WORDS) else 1, vocab.get(token, 0))

    shown = sorted(specials, key=rank)[:3]
    return ", ".join(repr(t) for t in shown) if shown else "'<|endoftext|>'"


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
    refuse_remote(spec_str, "--tokenizer")
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
                         path=str(p.resolve()), require_eos=require_eos, fast=fast, json_text=_read_json_text(p))
    if p.is_dir():
        tj = p / "tokenizer.json"
        if tj.is_file():
            try:
                backend = RustTokenizer.from_file(str(tj))
            except Exception as e:  # noqa: BLE001
                raise InputError(f"{tj}: unreadable tokenizer ({_first_line(e)}); check the directory") from None
            return Tokenizer(backend, spec_str, kind="dir", eos_token=eos_token, file_sha256=sha256_file(tj),
                             path=str(p.resolve()), require_eos=require_eos, fast=fast, json_text=_read_json_text(tj))
        return _from_transformers(spec_str, str(p.resolve()), "dir", eos_token, require_eos, fast)
    looks_local = spec_str.endswith(".json") or spec_str.startswith((".", "/", "~")) or spec_str.count("/") > 1
    if looks_local:
        raise InputError(f"{spec_str}: no such tokenizer file or directory; check --tokenizer")
    return _from_transformers(spec_str, None, "hub", eos_token, require_eos, fast)


def _from_transformers(spec: str, path: str | None, kind: str, eos_token: str | None,
                       require_eos: bool = True, fast: bool = True) -> Tokenizer:
    from ..hub import resolve_hub_name  # a hub name offline: its cached copy, or one line at once

    source = path or resolve_hub_name(spec, "--tokenizer")
    try:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(source)
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, HTTP errors...
        where = "directory" if path else "hub name"
        raise InputError(
            f"{spec}: cannot load this tokenizer {where} ({_first_line(e)}); give a local tokenizer.json, "
            f"a Hugging Face tokenizer directory, or a hub name that is cached or reachable"
        ) from None
    backend = getattr(hf, "backend_tokenizer", None) if getattr(hf, "is_fast", False) else None
    return Tokenizer(backend, spec, kind=kind, eos_token=eos_token, file_sha256=None, path=path,
                     hf_tokenizer=hf, require_eos=require_eos, fast=fast)


def _read_json_text(path: Path) -> str | None:
    """The text of a ``tokenizer.json`` that tokenizers loaded (None: not UTF-8 text; its serialisation is used)."""
    try:
        return path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def load_with_delimiters(settings) -> Tokenizer:
    """The tokenizer of ``schedule`` settings (``tokenizer``, ``eos_token``, ``bos_token``, ``convention``,
    ``allow_ordinary_delimiter``), its delimiters chosen: how the driver and every worker load it."""
    tok = load_tokenizer(settings.tokenizer, require_eos=False)
    tok.set_delimiters(eos_token=settings.eos_token, bos_token=settings.bos_token, convention=settings.convention,
                       allow_ordinary_delimiter=settings.allow_ordinary_delimiter)
    return tok


def check_convention(convention: str | None, bos_token: Delimiter, eos_token: Delimiter) -> None:
    """``--convention``: a known name, and not together with ``--bos-token`` / ``--eos-token``."""
    if convention is None:
        return
    Rule(flag="--convention", kind=str, choices=tuple(CONVENTIONS)).check(convention)
    if eos_token is not None or bos_token is not None:
        raise InputError(f"--convention {convention}: sets --bos-token and --eos-token; give either the "
                         f"convention or the tokens")
