"""Bad input, step by step: a one-line error naming the file and row (or option) and the fix,
a non-zero exit code, no traceback, and nothing already written damaged.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import MAX_LENGTH, SMALL_N_DOCS, assert_one_line_error, invoke, tree_bytes, write_jsonl


def snapshot(directory: Path) -> dict[str, bytes]:
    return tree_bytes(directory)


# --------------------------------------------------------------------------- embed
def _jsonl(tmp_path: Path, lines: list[bytes], name="bad.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


GOOD = json.dumps({"text": "A perfectly ordinary document about sorting lists."}).encode()


def _embed_cases(tmp_path: Path) -> dict[str, tuple[list, tuple[str, ...]]]:
    parquet = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": ["one document", "another document"] * 50}), parquet)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(parquet.read_bytes()[: parquet.stat().st_size // 2])
    no_column = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"body": ["x", "y"]}), no_column)
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    gz_bad = tmp_path / "bad.jsonl.gz"
    gz_bad.write_bytes(gzip.compress(GOOD + b"\n")[:-12])
    return {
        "missing input": ([tmp_path / "nope.jsonl"], ("nope.jsonl",)),
        "empty input": ([empty], ("empty.jsonl",)),
        "unknown format": ([_write(tmp_path / "corpus.csv", b"text\nhello\n")], ("corpus.csv", "parquet")),
        "missing text column": ([no_column], ("nocol.parquet", "text", "body")),
        "non-string text": ([_jsonl(tmp_path, [GOOD, b'{"text": 42}'], "num.jsonl")], ("num.jsonl", "line 2")),
        "null text": ([_jsonl(tmp_path, [GOOD, GOOD, b'{"text": null}'], "null.jsonl")], ("null.jsonl", "line 3")),
        "all documents empty": ([_jsonl(tmp_path, [b'{"text": ""}', b'{"text": "   "}'], "blank.jsonl")],
                                ("empty",)),
        "invalid utf-8": ([_jsonl(tmp_path, [GOOD, b'{"text": "caf\xe9"}'], "latin1.jsonl")],
                          ("latin1.jsonl", "line 2", "utf-8")),
        "malformed json line": ([_jsonl(tmp_path, [GOOD, GOOD, b'{"text": "unterminated'], "broken.jsonl")],
                                ("broken.jsonl", "line 3")),
        "truncated parquet": ([truncated], ("truncated.parquet",)),
        "corrupt gzip": ([gz_bad], ("bad.jsonl.gz",)),
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


EMBED_CASES = ["missing input", "empty input", "unknown format", "missing text column", "non-string text",
               "null text", "all documents empty", "invalid utf-8", "malformed json line", "truncated parquet",
               "corrupt gzip"]


@pytest.mark.parametrize("case", EMBED_CASES)
def test_embed_bad_input(tmp_path, case):
    inputs, needles = _embed_cases(tmp_path)[case]
    out = tmp_path / "emb"
    code, output = invoke(["embed", *inputs, "--out", out, "--max-length", MAX_LENGTH])
    assert_one_line_error(code, output, *needles)
    assert not (out / "manifest.json").exists()


def test_embed_output_that_is_a_file(tmp_path, small_corpus):
    target = tmp_path / "taken"
    target.write_text("precious")
    code, output = invoke(["embed", small_corpus, "--out", target, "--max-length", MAX_LENGTH])
    assert_one_line_error(code, output, "taken", "directory")
    assert target.read_text() == "precious"


def _readonly_mount(path: Path) -> bool:
    path.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        os.chmod(path, 0o500)
        return os.geteuid() != 0
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_embed_output_not_writable(tmp_path, small_corpus):
    ro = tmp_path / "ro"
    if not _readonly_mount(ro):
        pytest.skip("cannot make a read-only directory here (root without mount permission)")
    try:
        code, output = invoke(["embed", small_corpus, "--out", ro / "emb", "--max-length", MAX_LENGTH])
        assert_one_line_error(code, output, str(ro))
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(ro)], capture_output=True)


# --------------------------------------------------------------------------- cluster
def test_cluster_k_larger_than_documents_leaves_embeddings_untouched(tmp_path, embedded):
    before = snapshot(embedded)
    code, output = invoke(["cluster", embedded, "--out", tmp_path / "cl", "--k", SMALL_N_DOCS + 1])
    assert_one_line_error(code, output, "--k", str(SMALL_N_DOCS))
    assert snapshot(embedded) == before


def _broken_embed_copy(tmp_path: Path, embedded: Path, row: int, value: float) -> Path:
    copy = tmp_path / "emb-broken"
    shutil.copytree(embedded, copy)
    part = sorted(copy.glob("embeddings-*.npy"))[0]
    x = np.load(part)
    x[row] = value
    np.save(part, x)
    return copy


@pytest.mark.parametrize("value", [np.nan, 0.0])
def test_cluster_refuses_embeddings_edited_after_embed(tmp_path, embedded, value):
    """A NaN or zero row written into a part after embed finished: caught by its digest, named by file."""
    broken = _broken_embed_copy(tmp_path, embedded, row=3, value=value)
    code, output = invoke(["cluster", broken, "--out", tmp_path / "cl", "--k", 3])
    assert_one_line_error(code, output, "embeddings-00000.npy", "sha256")


# --------------------------------------------------------------------------- schedule
def test_schedule_tokenizer_without_eos(tmp_path, embedded, clustered, demo_tokenizer):
    spec = json.loads(demo_tokenizer.read_text())
    spec["added_tokens"] = []
    spec["model"]["vocab"].pop("<|endoftext|>", None)
    no_eos = tmp_path / "noeos.json"
    no_eos.write_text(json.dumps(spec))
    code, output = invoke(["schedule", embedded, clustered, "--out", tmp_path / "s", "--tokenizer", no_eos])
    assert_one_line_error(code, output, "noeos.json", "--eos-token")


def test_schedule_budget_the_clip_cannot_meet(tmp_path, embedded, clustered):
    code, output = invoke(["schedule", embedded, clustered, "--out", tmp_path / "s", "--dry-run",
                           "--max-repeats", 1, "--epochs", 2])
    assert_one_line_error(code, output, str(SMALL_N_DOCS), "--max-repeats")


def test_schedule_refuses_clusters_of_other_embeddings(tmp_path, embedded, clustered, small_docs):
    other = tmp_path / "other-emb"
    corpus = write_jsonl(tmp_path / "c.jsonl", small_docs[: SMALL_N_DOCS // 2])
    assert invoke(["embed", corpus, "--out", other, "--max-length", MAX_LENGTH])[0] == 0
    code, output = invoke(["schedule", other, clustered, "--out", tmp_path / "s", "--dry-run"])
    assert_one_line_error(code, output, "cluster")


def test_schedule_detects_a_corpus_changed_since_embed(tmp_path, small_docs, demo_tokenizer):
    corpus = write_jsonl(tmp_path / "c.jsonl", small_docs[:12])
    emb, cl = tmp_path / "emb", tmp_path / "cl"
    assert invoke(["embed", corpus, "--out", emb, "--max-length", MAX_LENGTH])[0] == 0
    assert invoke(["cluster", emb, "--out", cl, "--k", 2])[0] == 0
    write_jsonl(corpus, small_docs[:12][::-1])  # same size, new content and mtime
    os.utime(corpus, ns=(1, 1))
    code, output = invoke(["schedule", emb, cl, "--out", tmp_path / "s", "--tokenizer", demo_tokenizer])
    assert_one_line_error(code, output, "c.jsonl", "changed")


def test_schedule_full_disk_is_one_line_and_resumes_elsewhere(tmp_path, embedded, clustered, demo_tokenizer):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tiny tmpfs")
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount tmpfs here")
    before = snapshot(embedded), snapshot(clustered)
    try:
        code, output = invoke(["schedule", embedded, clustered, "--out", tiny / "s", "--tokenizer", demo_tokenizer,
                               "--epochs", 4, "--max-repeats", 4, "--format", "bin,parquet,megatron",
                               "--shard-tokens", 2000])
        assert_one_line_error(code, output, "no space left", "rerun")
        assert not (tiny / "s" / "manifest.json").exists()
    finally:
        import gc

        gc.collect()  # the failed run's frames may still map files there
        subprocess.run(["umount", "-l", str(tiny)], capture_output=True)
    assert (snapshot(embedded), snapshot(clustered)) == before
