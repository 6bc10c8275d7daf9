"""The default encoder: a Hugging Face model with masked mean pooling and L2 normalisation.

As in the ClusterClip reference code: token ids truncated at ``max_length`` (or, with
``long_docs="chunk-mean"``, every ``max_length`` window of the document, averaged weighted by
tokens), the last hidden states averaged over the real tokens, then L2-normalised.

Speed: batches of similar lengths within a token budget; on CPU, BERT-type models get
sequence packing (short sequences share a row with a block-diagonal attention mask and
positions restarting per sequence); SDPA attention; ``inference_mode``; bfloat16 on CPUs
with native bf16, float16 on CUDA; optional ``torch.compile``.

Memory per document is bounded: ``truncate`` tokenizes a prefix of the text (at most
:data:`MAX_PREFIX_CHARS` characters) that provably yields the first ``max_length`` tokens;
``chunk-mean`` tokenizes the text in pieces of :data:`PIECE_CHARS` characters.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError, first_line
from .batching import encode_prefixes, pack_rows, padded_length, plan_batches, split_text
from .encoder import Prepared, normalise_rows, resolve_device, resolve_dtype, resolve_model

#: default token budget per batch (longest sequence × batch size)
DEFAULT_BATCH_TOKENS = {"cpu": 8192, "cuda": 131072}
#: the longest prefix of a document ``truncate`` ever tokenizes (characters)
MAX_PREFIX_CHARS = 1 << 20
#: ``chunk-mean`` tokenizes documents in pieces of this many characters
PIECE_CHARS = 1 << 16


def _quiet_transformers():
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


class HFEncoder:
    """A Hugging Face encoder (``AutoModel``) with masked mean pooling and L2 normalisation."""

    def __init__(self, model=None, *, max_length: int = 256, device: str = "auto", dtype: str = "auto",
                 long_docs: str = "truncate", batch_tokens: int | None = None, batch_size: int | None = None,
                 compile: bool = False, trust_remote_code: bool = False, packing: str = "auto"):
        from tokenizers import Tokenizer
        from transformers import AutoConfig, AutoTokenizer

        self.load_path, self.model_name = resolve_model(model)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.is_cuda = self.device.startswith("cuda")
        self.long_docs = long_docs
        self.compile = bool(compile)
        self.batch_tokens = int(batch_tokens) if batch_tokens else DEFAULT_BATCH_TOKENS["cuda" if self.is_cuda else "cpu"]
        self.batch_size = int(batch_size) if batch_size else None
        _quiet_transformers()
        try:
            config = AutoConfig.from_pretrained(self.load_path, trust_remote_code=trust_remote_code)
            hf_tok = AutoTokenizer.from_pretrained(self.load_path, trust_remote_code=trust_remote_code)
        except Exception as e:  # noqa: BLE001 - OSError, ValueError, ImportError from remote code...
            raise InputError(f"--model {model}: cannot load it ({first_line(e)}); give a local Hugging Face model "
                             f"directory or a hub name (offline: a local directory)") from None
        limit = getattr(config, "max_position_embeddings", None)
        if limit and max_length > limit and getattr(config, "position_embedding_type", "absolute") == "absolute":
            raise InputError(f"--max-length {max_length}: longer than the model's {limit} positions; "
                             f"use --max-length {limit} or less")
        self.max_length = int(max_length)
        backend = getattr(hf_tok, "backend_tokenizer", None) or getattr(hf_tok, "_tokenizer", None)
        if backend is None:
            raise InputError(f"--model {model}: has no fast (Rust) tokenizer (tokenizer.json); use a model that has one")
        self.tokenizer = Tokenizer.from_str(backend.to_str())  # a private copy: padding/truncation are ours
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.pad_id = hf_tok.pad_token_id if hf_tok.pad_token_id is not None else 0
        # a prefix that covers max_length tokens for ordinary text (checked per document)
        self.clip_chars = max(1024, 12 * self.max_length)
        self._model_arg, self._trust_remote_code = model, trust_remote_code
        self.dim = int(getattr(config, "hidden_size", 0) or 0)
        packable = (getattr(config, "model_type", "") == "bert"
                    and getattr(config, "position_embedding_type", "absolute") == "absolute")
        if packing == "auto":
            self.packing = packable and not self.is_cuda
        elif packing == "on":
            if not packable:
                raise InputError(f"--model {model}: sequence packing supports BERT-type models only; "
                                 f"use --packing auto or off")
            self.packing = True
        else:
            self.packing = False

    @classmethod
    def from_settings(cls, s) -> "HFEncoder":
        return cls(s.model, max_length=s.max_length, device=s.device, dtype=s.dtype, long_docs=s.long_docs,
                   batch_tokens=s.batch_tokens, batch_size=s.batch_size, compile=s.compile,
                   trust_remote_code=s.trust_remote_code, packing=s.packing)

    @property
    def settings(self) -> dict:
        """What runs, resolved (recorded in the manifest)."""
        return {
            "backend": "hf",
            "model": self.model_name,
            "max_length": self.max_length,
            "long_docs": self.long_docs,
            "pooling": "mean",
            "normalize": "l2",
            "device": "cuda" if self.is_cuda else self.device,
            "dtype": self.dtype,
            "batch_tokens": self.batch_tokens,
            "batch_size": self.batch_size,
            "packing": "on" if self.packing else "off",
            "compile": self.compile,
        }

    # ----------------------------------------------------------------- weights (loaded on first use)
    @functools.cached_property
    def _net(self):
        """The weights, loaded on first use: a finished or refused run never pays for them."""
        import torch
        from transformers import AutoModel

        kwargs = dict(trust_remote_code=self._trust_remote_code, dtype=getattr(torch, self.dtype))
        try:
            net = AutoModel.from_pretrained(self.load_path, attn_implementation="sdpa", **kwargs)
        except (ValueError, ImportError, TypeError):
            net = AutoModel.from_pretrained(self.load_path, **kwargs)
        except OSError as e:
            raise InputError(f"--model {self._model_arg}: cannot load its weights ({first_line(e)}); "
                             f"check the model directory") from None
        return net.eval().to(self.device)

    @functools.cached_property
    def model(self):
        import torch

        return torch.compile(self._net, dynamic=True) if self.compile else self._net

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self._net.parameters())

    @property
    def n_embedding_params(self) -> int:
        import torch

        return sum(m.weight.numel() for m in self._net.modules() if isinstance(m, torch.nn.Embedding))

    # ----------------------------------------------------------------- tokenization (reader thread)
    def prepare(self, texts: Sequence[str]) -> Prepared:
        """Token id chunks per document: one (truncate) or one per window (chunk-mean), specials included."""
        if self.long_docs == "chunk-mean":
            items = []
            for text in texts:
                chunks = []
                for enc in self.tokenizer.encode_batch(split_text(text, PIECE_CHARS)):
                    chunks.append(_ids(enc))
                    chunks.extend(_ids(o) for o in enc.overflowing)
                items.append(chunks)
            return Prepared(items, [sum(len(c) for c in chunks) for chunks in items], 0, [False] * len(items))
        encs = encode_prefixes(self.tokenizer, texts, self.clip_chars, MAX_PREFIX_CHARS)
        items = [[_ids(e)] for e in encs]
        flags = [bool(e.overflowing) for e in encs]
        return Prepared(items, [len(c[0]) for c in items], sum(flags), flags)

    # ----------------------------------------------------------------- model
    def embed(self, prepared: Prepared, on_progress: Callable[[float], None] | None = None) -> np.ndarray:
        """float32 ``[n, dim]`` L2-normalised embeddings; NaN rows for documents whose vector is NaN or 0."""
        if not prepared.items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise_rows(*self.token_sums(prepared.items, on_progress))

    def token_sums(self, items: list, on_progress: Callable[[float], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per document (``items``: its token id chunks), the float64 sum of the last hidden states over its
        tokens and the float64 count of those tokens (``distill`` divides them without normalising)."""
        import torch

        seqs, owner = [], []
        for d, chunks in enumerate(items):
            for c in chunks:
                seqs.append(c)
                owner.append(d)
        n_docs = len(items)
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        with torch.inference_mode():
            run = self._run_packed if self.packing else self._run_padded
            sums = run(seqs, lengths, on_progress).cpu().numpy().astype(np.float64)
        counts = lengths.astype(np.float64)
        if len(seqs) != n_docs:  # chunk-mean: add the chunks of each document together
            owner_a = np.asarray(owner)
            doc_sums = np.zeros((n_docs, sums.shape[1]), dtype=np.float64)
            np.add.at(doc_sums, owner_a, sums)
            counts = np.bincount(owner_a, weights=counts, minlength=n_docs)
            sums = doc_sums
        return sums, counts

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed strings held in memory; float32 ``[n, dim]``, L2-normalised, input order."""
        return self.embed(self.prepare(list(texts)))

    def _multiple(self) -> int:
        return 8 if self.is_cuda else 1

    def _to_device(self, array: np.ndarray):
        import torch

        t = torch.from_numpy(array)
        if self.is_cuda:
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t

    def _run_padded(self, seqs, lengths, on_progress):
        """Masked sums of the last hidden states, one padded batch of similar lengths at a time."""
        import torch

        sums = None
        batches = plan_batches(lengths, self.batch_tokens, self.batch_size, self._multiple())
        for b, batch in enumerate(batches):
            longest = padded_length(int(lengths[batch[0]]), self._multiple())
            ids: np.ndarray = np.full((len(batch), longest), self.pad_id, dtype=np.int64)
            mask: np.ndarray = np.zeros((len(batch), longest), dtype=np.int64)
            for r, j in enumerate(batch):
                s = seqs[j]
                ids[r, : len(s)] = s
                mask[r, : len(s)] = 1
            t_ids, t_mask = self._to_device(ids), self._to_device(mask)
            hidden = self.model(input_ids=t_ids, attention_mask=t_mask).last_hidden_state
            pooled = (hidden.float() * t_mask.unsqueeze(-1).float()).sum(dim=1)
            if sums is None:
                sums = torch.zeros((len(seqs), pooled.shape[1]), dtype=torch.float32, device=pooled.device)
            sums[self._to_device(batch)] = pooled
            if on_progress is not None:
                on_progress((b + 1) / len(batches))
        return sums

    def _run_packed(self, seqs, lengths, on_progress):
        """Like :meth:`_run_padded`, but short sequences share a row (block-diagonal attention)."""
        import torch

        row_len, rows = pack_rows(lengths, self._multiple())
        per_batch = max(1, self.batch_tokens // row_len)
        if self.batch_size is not None:
            per_batch = min(per_batch, self.batch_size)
        sums = None
        n_batches = -(-len(rows) // per_batch)
        for b, start in enumerate(range(0, len(rows), per_batch)):
            batch_rows = rows[start : start + per_batch]
            ids: np.ndarray = np.full((len(batch_rows), row_len), self.pad_id, dtype=np.int64)
            pos: np.ndarray = np.zeros((len(batch_rows), row_len), dtype=np.int64)
            seg: np.ndarray = np.full((len(batch_rows), row_len), -1, dtype=np.int64)  # padding attends to padding only
            for r, members in enumerate(batch_rows):
                at = 0
                for j in members:
                    s = seqs[j]
                    ids[r, at : at + len(s)] = s
                    pos[r, at : at + len(s)] = np.arange(len(s))
                    seg[r, at : at + len(s)] = j
                    at += len(s)
            t_seg = self._to_device(seg)
            mask = (t_seg[:, :, None] == t_seg[:, None, :]).unsqueeze(1)
            hidden = self.model(input_ids=self._to_device(ids), attention_mask=mask,
                                position_ids=self._to_device(pos)).last_hidden_state
            flat_seg = t_seg.reshape(-1)
            keep = flat_seg >= 0
            flat = hidden.reshape(-1, hidden.shape[-1])[keep].float()
            if sums is None:
                sums = torch.zeros((len(seqs), flat.shape[1]), dtype=torch.float32, device=flat.device)
            sums.index_add_(0, flat_seg[keep], flat)
            if on_progress is not None:
                on_progress((b + 1) / n_batches)
        return sums


def _ids(enc) -> np.ndarray:
    return np.asarray(enc.ids, dtype=np.int32)


ENCODER = HFEncoder
