"""Tokenizer loading (EOS, vocab size, identity) and the token store (once per doc, resumable)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clusterclip.errors import ClusterClipError, InputError
from clusterclip.tokens.build import build_token_store
from clusterclip.tokens.store import TokenStore, token_dtype
from clusterclip.tokens.tokenizer import load_tokenizer

from shards_testlib import EOS, big_vocab_tokenizer, stdlib_docstrings, train_tokenizer


@pytest.fixture(scope="module")
def texts():
    return stdlib_docstrings(200)


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory, texts):
    return train_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json", texts)


def test_load_file_finds_eos_and_vocab(tok_path, texts):
    tok = load_tokenizer(str(tok_path))
    assert tok.eos_token == EOS and tok.eos_id == 0
    assert tok.vocab_size == 400
    ids = tok.encode_batch(texts[:5])
    assert all(isinstance(i, int) for i in ids[0]) and all(max(x) < tok.vocab_size for x in ids)
    assert tok.decode(ids[0]) == texts[0]  # byte-level BPE round-trips
    assert tok.eos_id not in ids[0]  # no special tokens added


def test_describe_is_stable_and_hashes_the_file(tok_path):
    import hashlib

    a, b = load_tokenizer(str(tok_path)).describe(), load_tokenizer(str(tok_path)).describe()
    assert a == b
    assert a["sha256"] == hashlib.sha256(tok_path.read_bytes()).hexdigest()
    assert a["eos_id"] == 0 and a["vocab_size"] == 400 and a["kind"] == "file"
    json.dumps(a)


def test_literal_eos_text_in_a_document_is_not_eos(tok_path):
    tok = load_tokenizer(str(tok_path))
    ids = tok.encode(f"before {EOS} after")
    assert tok.eos_id not in ids
    assert tok.decode(ids) == f"before {EOS} after"


def test_directory_with_config_naming_eos(tmp_path, texts):
    d = tmp_path / "hf"
    train_tokenizer(d / "tokenizer.json", texts, eos="<|custom_end|>")
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "<|custom_end|>"}}))
    tok = load_tokenizer(str(d))
    assert tok.eos_token == "<|custom_end|>" and tok.kind == "dir"


def test_tokenizer_without_eos_is_a_one_line_error(tmp_path, texts):
    p = train_tokenizer(tmp_path / "noeos.json", texts, eos=None)
    with pytest.raises(InputError) as e:
        load_tokenizer(str(p))
    msg = str(e.value)
    assert "\n" not in msg and "--eos-token" in msg and "no EOS" in msg
    # naming one works, by token or by id
    tok = load_tokenizer(str(p), eos_token="a")
    assert tok.eos_id == tok._tok.token_to_id("a")
    with pytest.raises(InputError, match="not a token"):
        load_tokenizer(str(p), eos_token="<|nope|>")
    assert load_tokenizer(str(p), require_eos=False).eos_id is None


def test_missing_or_bad_tokenizer_is_a_one_line_error(tmp_path):
    with pytest.raises(ClusterClipError, match="no such tokenizer"):
        load_tokenizer(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ClusterClipError, match="not a tokenizers"):
        load_tokenizer(str(bad))


def test_hf_auto_tokenizer_directory_without_tokenizer_json(tmp_path, texts):
    """A directory saved by transformers (fast tokenizer) loads through AutoTokenizer too."""
    from transformers import PreTrainedTokenizerFast

    p = train_tokenizer(tmp_path / "t.json", texts)
    hf = PreTrainedTokenizerFast(tokenizer_file=str(p), eos_token=EOS)
    d = tmp_path / "saved"
    hf.save_pretrained(str(d))
    tok = load_tokenizer(str(d))
    assert tok.eos_id == 0 and tok.vocab_size == 400
    assert tok.encode(texts[3]) == load_tokenizer(str(p)).encode(texts[3])


def test_big_vocab_ids(tmp_path, texts):
    tok = load_tokenizer(str(big_vocab_tokenizer(tmp_path / "big.json", texts)))
    assert tok.vocab_size > 65536 and tok.eos_id >= 70000
    assert min(tok.encode(texts[0])) >= 70000
    assert token_dtype(tok.vocab_size) == np.uint32 and token_dtype(65536) == np.uint16


# --------------------------------------------------------------------------- token store
def _pairs(texts, ids):
    return ((int(d), texts[d]) for d in ids)


class _Counting:
    """A tokenizer-like object (build_token_store encodes any such object in-process) that counts its calls."""

    def __init__(self, tok):
        self.tok, self.calls = tok, []
        self.vocab_size, self.backend, self.backend_reason = tok.vocab_size, tok.backend, tok.backend_reason

    def describe(self, **kw):
        return self.tok.describe(**kw)

    def encode_batch(self, batch):
        self.calls.append(len(batch))
        return self.tok.encode_batch(batch)


def test_store_tokenizes_used_docs_once(tmp_path, tok_path, texts):
    tok = load_tokenizer(str(tok_path))
    used = np.array([0, 3, 4, 10, 57, 199])
    counting = _Counting(tok)
    calls, orig = counting.calls, tok.encode_batch
    store = build_token_store(_pairs(texts, used), len(texts), counting, tmp_path / "s", progress=False, batch_docs=4)
    assert sum(calls) == len(used) and max(calls) <= 4
    assert store.dtype == np.uint16 and store.n_docs == len(texts)
    for d in range(len(texts)):
        if d in used:
            assert store.tokens(d).tolist() == orig([texts[d]])[0]
        else:
            assert store.lengths[d] == -1
    flat, sizes = store.gather(np.array([57, 0, 57]), tok.eos_id)
    exp = orig([texts[57]])[0] + [0] + orig([texts[0]])[0] + [0] + orig([texts[57]])[0] + [0]
    assert flat.tolist() == exp and sizes.tolist() == [store.lengths[57] + 1, store.lengths[0] + 1] + [store.lengths[57] + 1]
    # a finished store is reused without reading the texts again
    again = build_token_store(iter(()), len(texts), tok, tmp_path / "s", progress=False)
    assert again.n_tokens == store.n_tokens and np.array_equal(again.lengths, store.lengths)


def test_store_resumes_after_interruption(tmp_path, tok_path, texts):
    tok = load_tokenizer(str(tok_path))
    ids = np.arange(0, len(texts), 2)
    ref = build_token_store(_pairs(texts, ids), len(texts), tok, tmp_path / "ref", progress=False, batch_docs=8)

    def interrupted():
        for i, pair in enumerate(_pairs(texts, ids)):
            if i == 37:
                raise KeyboardInterrupt
            yield pair

    with pytest.raises(KeyboardInterrupt):
        build_token_store(interrupted(), len(texts), tok, tmp_path / "s", progress=False, batch_docs=8)
    assert not (tmp_path / "s" / "meta.json").exists()
    seen = []

    def watch():
        for pair in _pairs(texts, ids):
            seen.append(pair[0])
            yield pair

    counting = _Counting(tok)
    calls = counting.calls
    store = build_token_store(watch(), len(texts), counting, tmp_path / "s", progress=False, batch_docs=8)
    assert sum(calls) == len(ids) - 32  # 4 finished batches of 8 were kept
    for name in ("tokens.bin", "lengths.npy", "offsets.npy", "meta.json"):
        assert (tmp_path / "s" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    assert isinstance(TokenStore.open(tmp_path / "s"), TokenStore) and store.n_tokens == ref.n_tokens


def test_store_rejects_unsorted_input(tmp_path, tok_path, texts):
    tok = load_tokenizer(str(tok_path))
    with pytest.raises(ValueError, match="ascending"):
        build_token_store(_pairs(texts, [5, 3]), len(texts), tok, tmp_path / "s", progress=False, batch_docs=1)


def test_store_other_tokenizer_is_refused(tmp_path, tok_path, texts):
    from clusterclip.errors import MismatchError

    tok = load_tokenizer(str(tok_path))
    build_token_store(_pairs(texts, [1]), len(texts), tok, tmp_path / "s", progress=False)
    other = load_tokenizer(str(train_tokenizer(tmp_path / "o.json", texts, vocab_size=300)))
    with pytest.raises(MismatchError):
        build_token_store(_pairs(texts, [1]), len(texts), other, tmp_path / "s", progress=False)


def test_store_empty_documents(tmp_path, tok_path):
    tok = load_tokenizer(str(tok_path))
    store = build_token_store([(0, ""), (1, "")], 2, tok, tmp_path / "s", progress=False)
    assert store.n_tokens == 0 and store.lengths.tolist() == [0, 0]
    flat, sizes = store.gather(np.array([1, 0]), tok.eos_id)
    assert flat.tolist() == [0, 0] and sizes.tolist() == [1, 1]


def test_gather_matches_a_naive_loop(tmp_path, tok_path, texts):
    tok = load_tokenizer(str(tok_path))
    docs = [t if i % 5 else "" for i, t in enumerate(texts[:60])]  # some empty documents
    store = build_token_store(enumerate(docs), len(docs), tok, tmp_path / "s", progress=False, batch_docs=16)
    rng = np.random.default_rng(1)
    for _ in range(20):
        order = rng.integers(0, len(docs), size=int(rng.integers(0, 40)))
        flat, sizes = store.gather(order, tok.eos_id)
        naive = [x for d in order for x in store.tokens(int(d)).tolist() + [tok.eos_id]]
        assert flat.tolist() == naive
        assert sizes.tolist() == [int(store.lengths[d]) + 1 for d in order]
