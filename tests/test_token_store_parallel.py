"""The token store with parallel workers: same bytes for any split, resume, verification, progress."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizer_families import hf_ids, hf_reference

import clusterclip.tokens.build as ts
from clusterclip.errors import ClusterClipError
from clusterclip.tokens.build import build_token_store
from clusterclip.tokens.tokenizer import load_tokenizer

from shards_testlib import stdlib_docstrings, train_tokenizer

FILES = ("tokens.bin", "lengths.npy", "offsets.npy")


@pytest.fixture(scope="module")
def texts():
    docs = stdlib_docstrings(160)
    # a few empty and long documents among them
    return [d if i % 17 else "" for i, d in enumerate(docs)] + ["\n".join(docs[:40])] * 2


@pytest.fixture(scope="module")
def tok_path(tmp_path_factory, texts):
    return train_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json", texts, vocab_size=800)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tok_path, texts):
    """A store built in one batch by one worker; every other build must equal it byte for byte."""
    tok = load_tokenizer(str(tok_path))
    root = tmp_path_factory.mktemp("ref") / "s"
    build_token_store(enumerate(texts), len(texts), tok, root, progress=False, workers=1,
                      batch_docs=10**9, batch_chars=10**12)
    return {name: (root / name).read_bytes() for name in (*FILES, "meta.json")}


def _files(path: Path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in (*FILES, "meta.json")}


def _pairs(texts, ids=None):
    ids = range(len(texts)) if ids is None else ids
    return ((int(d), texts[d]) for d in ids)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workers=st.integers(1, 3), batch_docs=st.integers(3, 60), batch_chars=st.integers(1_000, 200_000))
def test_store_bytes_do_not_depend_on_workers_or_batches(tmp_path_factory, tok_path, texts, reference,
                                                         workers, batch_docs, batch_chars):
    tok = load_tokenizer(str(tok_path))
    path = tmp_path_factory.mktemp("s") / "s"
    store = build_token_store(enumerate(texts), len(texts), tok, path, progress=False, workers=workers,
                              batch_docs=batch_docs, batch_chars=batch_chars)
    assert _files(path) == reference
    assert store.meta["backend"] == "gigatoken"


def _spy_pools(monkeypatch) -> list[str]:
    """The kinds of worker pools build_token_store starts ("ProcessPoolExecutor", ...)."""
    kinds: list[str] = []
    real = ts._Run._executor

    def spy(self, use_processes):
        out = real(self, use_processes)
        kinds.append(type(out[0]).__name__)
        return out

    monkeypatch.setattr(ts._Run, "_executor", spy)
    return kinds


def test_worker_processes_of_tokenizers_write_the_same_bytes(tmp_path, tok_path, texts, reference, monkeypatch):
    """Hugging Face encoding (no fast backend) runs in worker processes: same tokens, same files."""
    monkeypatch.setattr(ts, "PROCESS_MIN_CHARS", 0)
    pools = _spy_pools(monkeypatch)
    tok = load_tokenizer(str(tok_path), fast=False)
    store = build_token_store(enumerate(texts), len(texts), tok, tmp_path / "s", progress=False, workers=2,
                              batch_docs=7)
    files = _files(tmp_path / "s")
    assert {n: files[n] for n in FILES} == {n: reference[n] for n in FILES}
    meta, ref_meta = json.loads(files["meta.json"]), json.loads(reference["meta.json"])
    assert meta.pop("backend") == "hf" and ref_meta.pop("backend") == "gigatoken"
    assert meta.pop("backend_reason") == "fast path off: the fast path was turned off"
    assert ref_meta.pop("backend_reason") == "in the fast path's allow-list (gpt2 family)" and meta == ref_meta
    assert store.n_tokens == sum(len(hf_ids(hf_reference(tok_path), t)) for t in texts)
    assert pools == ["ProcessPoolExecutor"]


@pytest.mark.parametrize("mode", ["threads", "processes"])
@pytest.mark.parametrize("stop_at", [0, 5, 23, 50])
def test_resume_after_interruption_writes_the_same_bytes(tmp_path, tok_path, texts, reference, monkeypatch,
                                                         mode, stop_at):
    monkeypatch.setattr(ts, "PROCESS_MIN_CHARS", 0)
    pools = _spy_pools(monkeypatch)
    tok = load_tokenizer(str(tok_path), fast=mode == "threads")
    batch_docs = 4

    def interrupted():
        for i, pair in enumerate(_pairs(texts)):
            if i == stop_at:
                raise KeyboardInterrupt
            yield pair

    with pytest.raises(KeyboardInterrupt):
        build_token_store(interrupted(), len(texts), tok, tmp_path / "s", progress=False, workers=2,
                          batch_docs=batch_docs)
    progress = json.loads((tmp_path / "s" / "progress.json").read_text()) if stop_at >= batch_docs else None
    if progress is not None:  # every complete batch read before the interruption was kept
        assert progress["docs"] == stop_at // batch_docs * batch_docs
    build_token_store(_pairs(texts), len(texts), tok, tmp_path / "s", progress=False, workers=2,
                      batch_docs=batch_docs)
    files = _files(tmp_path / "s")
    assert {n: files[n] for n in FILES} == {n: reference[n] for n in FILES}
    assert not (tmp_path / "s" / "progress.json").exists()
    kind = "ThreadPoolExecutor" if mode == "threads" else "ProcessPoolExecutor"
    assert pools[-1] == kind and (stop_at < 2 * batch_docs or pools[0] == kind)


# --------------------------------------------------------------------------- verification
def _wrong_fast_path(tok, letter: str = "z"):
    """Make the fast backend wrong on words with ``letter``: its merges of that letter are dropped."""
    data = json.loads(tok.encoder_plan().fast_json)
    data["model"]["merges"] = [m for m in data["model"]["merges"] if letter not in "".join(m)]
    tok._plan = dataclasses.replace(tok.encoder_plan(), fast_json=json.dumps(data))
    tok._encoder_cache = None
    return tok


def _z_after(texts, n: int = 10):
    """The corpus with ``n`` documents without a "z" first (the wrong fast path is right on them)."""
    plain = [t for t in texts if "z" not in t]
    return plain[:n] + [t for t in texts if "z" in t] + plain[n:]


def _expected(tok_path, docs):
    ref = hf_reference(tok_path)
    return [hf_ids(ref, t) for t in docs]


def test_a_wrong_fast_path_is_caught_on_the_first_documents(tmp_path, tok_path, texts, capsys):
    tok = _wrong_fast_path(load_tokenizer(str(tok_path)))
    docs = sorted(texts, key=lambda t: "z" not in t)  # a "z" in the very first documents
    assert tok.encode(docs[0]) != _expected(tok_path, docs[:1])[0]  # the injected fault is real
    store = build_token_store(_pairs(docs), len(docs), tok, tmp_path / "s", progress=False, workers=2,
                              batch_docs=8)
    assert [store.tokens(i).tolist() for i in range(len(docs))] == _expected(tok_path, docs)
    assert store.meta["backend"] == "hf" and tok.backend == "hf"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disagreed with tokenizers on doc_id 0" in err[0]


def test_a_fast_path_found_wrong_after_writing_restarts_when_texts_can_be_read_again(tmp_path, tok_path, texts):
    tok = _wrong_fast_path(load_tokenizer(str(tok_path)))
    docs = _z_after(texts)
    first_z = next(i for i, t in enumerate(docs) if "z" in t)
    assert 8 <= first_z < ts.VERIFY_FIRST_DOCS  # verified, after two batches were written
    store = build_token_store(lambda: _pairs(docs), len(docs), tok, tmp_path / "s", progress=False, workers=2,
                              batch_docs=4)
    assert [store.tokens(i).tolist() for i in range(len(docs))] == _expected(tok_path, docs)
    assert store.meta["backend"] == "hf"


def test_a_fast_path_found_wrong_after_writing_stops_then_a_rerun_uses_tokenizers(tmp_path, tok_path, texts):
    tok = _wrong_fast_path(load_tokenizer(str(tok_path)))
    docs = _z_after(texts)
    with pytest.raises(ClusterClipError) as e:
        build_token_store(_pairs(docs), len(docs), tok, tmp_path / "s", progress=False, workers=2, batch_docs=4)
    assert "\n" not in str(e.value) and "rerun" in str(e.value)
    again = _wrong_fast_path(load_tokenizer(str(tok_path)))  # a new process: the fast path is on again
    store = build_token_store(_pairs(docs), len(docs), again, tmp_path / "s", progress=False, workers=2,
                              batch_docs=4)
    assert [store.tokens(i).tolist() for i in range(len(docs))] == _expected(tok_path, docs)
    assert again.backend == "hf" and store.meta["backend"] == "hf"


def test_verified_documents_do_not_depend_on_the_batch_split():
    picked = [d for d in range(200_000) if ts._sampled_for_verification(d)]
    assert 100 < len(picked) < 300  # about one in VERIFY_ONE_IN


def test_huge_documents_go_through_the_store_in_pieces(tmp_path, tok_path, texts, monkeypatch):
    from clusterclip.tokens import fast as fast_tokenizer

    doc = "\n".join(texts) * 4
    monkeypatch.setattr(fast_tokenizer, "PIECE_CHARS", 2048)
    tok = load_tokenizer(str(tok_path))
    assert tok.encoder_plan().piece_chars == 2048
    store = build_token_store([(0, doc), (1, "short")], 2, tok, tmp_path / "s", progress=False, workers=2)
    assert [store.tokens(0).tolist(), store.tokens(1).tolist()] == _expected(tok_path, [doc, "short"])


# --------------------------------------------------------------------------- progress
class _Slow:
    """A tokenizer-like object whose batches take a while."""

    def __init__(self, tok, seconds):
        self.tok, self.seconds, self.vocab_size = tok, seconds, tok.vocab_size

    def describe(self, **kw):
        return self.tok.describe(**kw)

    def encode_batch(self, batch):
        time.sleep(self.seconds)
        return self.tok.encode_batch(batch)


def test_progress_bar_has_a_total_a_rate_and_refreshes_during_a_slow_batch(tmp_path, tok_path, texts, capsys,
                                                                          monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delenv("CLUSTERCLIP_NO_PROGRESS", raising=False)  # the token store's bar follows both
    monkeypatch.setattr(ts, "REFRESH_S", 0.05)
    tok = _Slow(load_tokenizer(str(tok_path)), 0.6)
    build_token_store(_pairs(texts, range(20)), len(texts), tok, tmp_path / "s", progress=True, total=20,
                      batch_docs=10)
    err = capsys.readouterr().err
    assert "tokenize" in err and "/20" in err and "tok/s" in err
    before_first_batch = err.split("10/20")[0]
    assert before_first_batch.count("0/20") >= 5  # redrawn while the first batch was encoded


@pytest.mark.parametrize("how", ["argument", "env"])
def test_progress_can_be_turned_off(tmp_path, tok_path, texts, capsys, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("TQDM_DISABLE", "1")
    else:
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
    build_token_store(_pairs(texts, range(20)), len(texts), load_tokenizer(str(tok_path)), tmp_path / "s",
                      progress=how == "env", total=20)
    assert capsys.readouterr().err == ""


def test_progress_enabled_reads_both_variables(monkeypatch):
    """One rule for every bar (the token store's included): --quiet, CLUSTERCLIP_NO_PROGRESS or TQDM_DISABLE."""
    from clusterclip.progress import progress_enabled

    for name in ("TQDM_DISABLE", "CLUSTERCLIP_NO_PROGRESS"):
        monkeypatch.delenv("TQDM_DISABLE", raising=False)
        monkeypatch.delenv("CLUSTERCLIP_NO_PROGRESS", raising=False)
        for value, on in (("", True), ("0", True), ("false", True), ("1", False), ("true", False), ("yes", False)):
            monkeypatch.setenv(name, value)
            assert progress_enabled(True) is on
        assert progress_enabled(False) is False


def test_bad_worker_count_is_a_one_line_error(tmp_path, tok_path, texts):
    from clusterclip.errors import InputError

    with pytest.raises(InputError, match="--workers 0: must be at least 1"):
        build_token_store(_pairs(texts, [0]), len(texts), load_tokenizer(str(tok_path)), tmp_path / "s",
                          progress=False, workers=0)


def test_default_workers_is_every_core():
    import os

    assert ts.default_workers() == len(os.sched_getaffinity(0))
    assert np.dtype(ts.token_dtype(800)) == np.uint16
