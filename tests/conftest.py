"""Session fixtures: a small real corpus (stdlib docstrings), a tokenizer trained on it, and a
session-wide embed + cluster run that the end-to-end tests reuse (embedding is the slow part)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CLUSTERCLIP_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded in the tests: fail at once

from helpers import MAX_LENGTH, SMALL_N_DOCS, load_script, run_cli, stdlib_docs, write_jsonl  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """clusterclip's cache ($CLUSTERCLIP_CACHE: token stores, static models) in a folder of the session, never ~/.cache."""
    os.environ["CLUSTERCLIP_CACHE"] = str(tmp_path_factory.mktemp("clusterclip-cache"))


@pytest.fixture(autouse=True)
def _own_token_cache(tmp_path_factory, monkeypatch):
    """Each test its own cache: a test tokenizes as if no earlier test had (its later schedules reuse its own)."""
    monkeypatch.setenv("CLUSTERCLIP_CACHE", str(tmp_path_factory.mktemp("clusterclip-cache")))


@pytest.fixture(scope="session")
def small_docs() -> list[dict]:
    return stdlib_docs(SMALL_N_DOCS)


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory, small_docs) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "docs.jsonl", small_docs)


@pytest.fixture(scope="session")
def demo_tokenizer(tmp_path_factory) -> Path:
    """A byte-level BPE (vocab 2048, EOS ``<|endoftext|>``) trained on real docstrings."""
    trainer = load_script("train_demo_tokenizer")
    corpus = write_jsonl(tmp_path_factory.mktemp("tok") / "train.jsonl", stdlib_docs(400))
    tok = trainer.train(corpus, vocab_size=2048)
    path = corpus.parent / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="session")
def embedded(tmp_path_factory, small_corpus) -> Path:
    emb = tmp_path_factory.mktemp("pipeline") / "emb"
    run_cli(["embed", small_corpus, "--out", emb, "--max-length", MAX_LENGTH, "--id-column", "id"])
    return emb


@pytest.fixture(scope="session")
def clustered(tmp_path_factory, embedded) -> Path:
    cl = embedded.parent / "cl"
    run_cli(["cluster", embedded, "--out", cl, "--k", 5, "--seed", 0])
    return cl
