"""Shared fixtures: a small real corpus (stdlib docstrings), a tokenizer trained on it, and
a session-wide embed + cluster run that the end-to-end tests reuse (embedding is the slow part).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

os.environ.setdefault("CLUSTERCLIP_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

REPO = Path(__file__).resolve().parents[1]
SMALL_N_DOCS = 48
MAX_LENGTH = 32


def load_script(name: str):
    """Import ``scripts/NAME.py`` (the demo corpus builder, the tokenizer trainer) as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stdlib_docs(n: int, min_chars: int = 80) -> list[dict]:
    """``n`` real documents: Python standard library docstrings, as the demo corpus."""
    builder = load_script("build_demo_corpus")
    docs = []
    for doc in builder.iter_docstrings(max_docs=n, min_chars=min_chars):
        docs.append(doc)
    return docs


def write_jsonl(path: Path, docs: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    return path


def run_cli(args: list[str], expect_ok: bool = True):
    """Run ``clusterclip ARGS`` in-process with click's CliRunner; assert the exit code."""
    from clusterclip.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if expect_ok:
        assert result.exit_code == 0, f"clusterclip {' '.join(map(str, args))} failed:\n{result.output}"
    return result


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
