"""Shared helpers of the shard tests: a tiny real tokenizer, real texts, an order, a token store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from helpers import load_script

EOS = "<|endoftext|>"
ALL = ("bin", "megatron", "mds", "parquet")


def stdlib_docstrings(limit: int = 400) -> list[str]:
    """Real English/Python text: the demo corpus's standard-library docstrings, deterministic order."""
    builder = load_script("build_demo_corpus")
    return [d["text"] for d in builder.iter_docstrings(max_docs=limit, min_chars=21)]


def train_tokenizer(path: Path, texts: list[str], vocab_size: int = 400, eos: str | None = EOS,
                    extra_special: int = 0) -> Path:
    """The demo's byte-level BPE trained on ``texts``; ``extra_special`` pads the vocabulary with special tokens."""
    tok = load_script("train_demo_tokenizer").train_bpe(texts, vocab_size, special_tokens=[eos] if eos else [])
    if extra_special:
        tok.add_special_tokens([f"<|pad_{i}|>" for i in range(extra_special)])
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def big_vocab_tokenizer(path: Path, texts: list[str]) -> Path:
    """A tokenizer whose vocabulary exceeds 65536 ids and whose EOS id and BPE ids are above 65535.

    Built by offsetting a small BPE's ids: the JSON's model vocab and added tokens are shifted
    by 70000 and the holes are filled with unused placeholder tokens.
    """
    small = train_tokenizer(path.with_name("small.json"), texts)
    data = json.loads(small.read_text("utf-8"))
    shift = 70_000
    vocab = {t: i + shift for t, i in data["model"]["vocab"].items()}
    for i in range(shift):
        vocab[f"<unused_{i}>"] = i
    data["model"]["vocab"] = vocab
    for a in data["added_tokens"]:
        a["id"] += shift
    path.write_text(json.dumps(data), "utf-8")
    return path


def make_order(n_docs: int, n_samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random order over a subset of the documents, with repeats, plus cluster and repeat columns."""
    rng = np.random.default_rng(seed)
    used = np.sort(rng.choice(n_docs, size=max(1, int(n_docs * 0.8)), replace=False))
    doc_ids = rng.choice(used, size=n_samples, replace=True).astype(np.int64)
    cluster = (doc_ids % 7).astype(np.int32)
    repeat = np.zeros(n_samples, dtype=np.int32)
    seen: dict[int, int] = {}
    for i, d in enumerate(doc_ids.tolist()):
        repeat[i] = seen.get(d, 0)
        seen[d] = repeat[i] + 1
    return doc_ids, cluster, repeat


def build_store(tok, texts: list[str], doc_ids: np.ndarray, path: Path):
    from clusterclip.tokens.build import build_token_store

    used = np.unique(doc_ids)
    return build_token_store(((int(d), texts[d]) for d in used), len(texts), tok, path, progress=False,
                             batch_docs=64)


def expected_samples(tok, texts: list[str], doc_ids: np.ndarray) -> list[np.ndarray]:
    """What position i must hold: the tokenization of its document, then EOS (computed independently)."""
    cache: dict[int, list[int]] = {}
    out = []
    for d in doc_ids.tolist():
        if d not in cache:
            cache[d] = tok.encode(texts[d])
        out.append(np.array(cache[d] + [tok.eos_id], dtype=np.int64))
    return out


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def mds_python() -> str | None:
    """The python of the separate MosaicML Streaming environment, if it was built."""
    root = Path(__file__).resolve().parents[1]
    env = os.environ.get("CLUSTERCLIP_MDS_PYTHON")
    cand = Path(env) if env else root / ".venv-mds" / "bin" / "python"
    return str(cand) if cand.exists() else None


class Built:
    pass


def build_all(root: Path, tok_file: Path, texts, n_samples=600, seed=0, shard_tokens=None, formats=None) -> Built:
    """Tokenizer, order, token store and shards of every format (or ``formats``) under ``root``."""
    from clusterclip.shards import write_shards
    from clusterclip.tokens.tokenizer import load_tokenizer

    b = Built()
    b.root, b.texts = root, texts
    b.tok = load_tokenizer(str(tok_file))
    b.doc_ids, b.cluster, b.repeat = make_order(len(texts), n_samples, seed)
    b.store = build_store(b.tok, texts, b.doc_ids, root / "store")
    b.expected = expected_samples(b.tok, texts, b.doc_ids)
    total = sum(len(x) for x in b.expected)
    b.shard_tokens = shard_tokens or total // 5
    b.out = root / "out"
    b.index = write_shards(b.doc_ids, b.cluster, b.repeat, b.store, b.out, formats=formats or ALL,
                           shard_tokens=b.shard_tokens, eos_id=b.tok.eos_id, vocab_size=b.tok.vocab_size,
                           progress=False)
    return b


def synthetic_store(path: Path, docs: list[np.ndarray], vocab_size: int):
    """A real :class:`TokenStore` on disk holding ``docs`` (token arrays; None = not tokenized)."""
    from clusterclip.tokens.store import TokenStore, token_dtype

    path.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab_size)
    lengths = np.array([-1 if d is None else len(d) for d in docs], dtype=np.int64)
    flat = [np.asarray(d) for d in docs if d is not None]
    data = np.concatenate(flat).astype(dtype) if flat else np.zeros(0, dtype)
    offsets = np.zeros(len(docs), dtype=np.int64)
    np.cumsum(np.maximum(lengths, 0)[:-1], out=offsets[1:]) if len(docs) > 1 else None
    data.tofile(path / "tokens.bin")
    np.save(path / "lengths.npy", lengths)
    np.save(path / "offsets.npy", offsets)
    (path / "meta.json").write_text(json.dumps({"n_docs": len(docs), "dtype": dtype.name, "vocab_size": vocab_size,
                                               "n_tokens": int(len(data))}))
    return TokenStore.open(path)


def stream_of(store, doc_ids, bos_id=None, eos_id=None) -> tuple[np.ndarray, np.ndarray]:
    """The expected stream (samples concatenated, delimiters included) and each sample's start, built
    document by document from the store (independently of the shard writer's vectorised gather)."""
    parts, starts, pos = [], [], 0
    for d in np.asarray(doc_ids).tolist():
        s = ([bos_id] if bos_id is not None else []) + np.asarray(store.tokens(d)).tolist() \
            + ([eos_id] if eos_id is not None else [])
        starts.append(pos)
        parts.extend(s)
        pos += len(s)
    return np.asarray(parts, dtype=np.int64), np.asarray(starts, dtype=np.int64)
