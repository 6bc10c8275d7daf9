"""Kill -9 each step where a crash matters, run the same command again: it resumes and the outputs
are byte-identical to an uninterrupted run. One run per --out at a time.

The kills are deterministic: ``CLUSTERCLIP_FAULT=POINT[:N]`` makes the real process SIGKILL itself
the N-th time it passes a checkpoint (:mod:`clusterclip.faults`), and every test asserts that the
process really died there (exit by signal 9, no finished manifest), so no test can pass because a
kill came after the process had finished. One test also kills from outside, mid-step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import clusterclip_command, run_process, stdlib_docs, tree_bytes, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("rel") / "corpus.jsonl", stdlib_docs(64))


def commands(corpus: Path, emb: Path, cl: Path, sched: Path, tokenizer: Path) -> dict[str, list]:
    return {
        "embed": ["embed", corpus, "--out", emb, "--max-length", 32, "--part-docs", 8, "--window-docs", 8],
        "cluster": ["cluster", emb, "--out", cl, "--k", 4, "--seed", 1],
        "schedule": ["schedule", emb, cl, "--out", sched, "--tokenizer", tokenizer, "--format", "bin,megatron,parquet",
                     "--shard-tokens", 400, "--epochs", 3, "--max-repeats", 3, "--seed", 5],
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus, demo_tokenizer) -> dict:
    """One uninterrupted run of every step."""
    root = tmp_path_factory.mktemp("ref")
    cmds = commands(corpus, root / "emb", root / "cl", root / "sched", demo_tokenizer)
    for name in ("embed", "cluster", "schedule"):
        run_process(*cmds[name])
    return {"root": root, "cmds": cmds}


def killed_at(args: list, point: str) -> None:
    """Run ``clusterclip ARGS`` with a fault at ``point``; assert it died there by SIGKILL."""
    result = run_process(*args, check=False, env={"CLUSTERCLIP_FAULT": point})
    assert result.returncode == -signal.SIGKILL, f"not killed at {point}: rc {result.returncode}\n{result.stderr}"


def assert_unfinished(out: Path, finished_before: dict | None = None) -> None:
    """After a kill: either no manifest, or exactly the previous finished output (never a mix)."""
    if finished_before is None:
        assert not (out / "manifest.json").exists()
    else:
        assert tree_bytes(out) == finished_before


def test_a_second_run_of_every_step_is_byte_identical(tmp_path, reference, corpus, demo_tokenizer):
    root = reference["root"]
    cmds = commands(corpus, tmp_path / "emb", tmp_path / "cl", tmp_path / "sched", demo_tokenizer)
    run_process(*cmds["embed"])
    assert tree_bytes(tmp_path / "emb") == tree_bytes(root / "emb")
    run_process("cluster", root / "emb", "--out", tmp_path / "cl2", "--k", 4, "--seed", 1)
    assert tree_bytes(tmp_path / "cl2") == tree_bytes(root / "cl")
    run_process(*commands(corpus, root / "emb", root / "cl", tmp_path / "s2", demo_tokenizer)["schedule"])
    assert tree_bytes(tmp_path / "s2") == tree_bytes(root / "sched")


@pytest.mark.parametrize("point", ["locked", "embed.part:1", "embed.part:4", "embed.part:8", "commit.file:1"])
def test_embed_resumes_after_kill_9(tmp_path, reference, corpus, demo_tokenizer, point):
    emb = tmp_path / "emb"
    cmd = commands(corpus, emb, tmp_path / "cl", tmp_path / "s", demo_tokenizer)["embed"]
    killed_at(cmd, point)
    assert_unfinished(emb)
    out = run_process(*cmd)
    assert tree_bytes(emb) == tree_bytes(reference["root"] / "emb")
    if point.startswith("embed.part"):  # the parts written before the kill were kept, not redone
        assert "(resumed)" in out.stdout and json.loads((emb / "manifest.json").read_text())["statistics"]["parts"] == 8
    assert "already done" in run_process(*cmd).stdout


@pytest.mark.parametrize("point", ["locked", "cluster.trained", "cluster.assigned", "commit.file:2"])
def test_cluster_resumes_after_kill_9(tmp_path, reference, point):
    root = reference["root"]
    cl = tmp_path / "cl"
    cmd = ["cluster", root / "emb", "--out", cl, "--k", 4, "--seed", 1]
    killed_at(cmd, point)
    assert_unfinished(cl)
    run_process(*cmd)
    assert tree_bytes(cl) == tree_bytes(root / "cl")


@pytest.mark.parametrize("point", ["schedule.tokens:1", "schedule.order", "schedule.shard:1", "schedule.shard:3",
                                   "commit.file:3"])
def test_schedule_resumes_after_kill_9(tmp_path, reference, corpus, demo_tokenizer, point):
    root = reference["root"]
    sched = tmp_path / "sched"
    cmd = commands(corpus, root / "emb", root / "cl", sched, demo_tokenizer)["schedule"]
    killed_at(cmd, point)
    assert_unfinished(sched)
    run_process(*cmd)
    assert tree_bytes(sched) == tree_bytes(root / "sched")


def test_a_kill_from_outside_mid_step_resumes(tmp_path, reference, corpus, demo_tokenizer):
    """SIGKILL from another process as soon as the first part is on disk (7 more parts to go)."""
    emb = tmp_path / "emb"
    cmd = clusterclip_command(*commands(corpus, emb, tmp_path / "cl", tmp_path / "s", demo_tokenizer)["embed"])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1"})
    journal = emb / ".clusterclip" / "build" / ".parts" / "journal.jsonl"
    deadline = time.monotonic() + 300
    while not (journal.exists() and journal.read_text().count("\n") >= 1):
        assert proc.poll() is None, "embed ended before its first part"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert_unfinished(emb)
    run_process(*cmd[3:])
    assert tree_bytes(emb) == tree_bytes(reference["root"] / "emb")


def test_a_killed_overwrite_leaves_the_old_output_whole(tmp_path, reference, corpus, demo_tokenizer):
    """--overwrite builds beside the old output: killed anywhere before the commit, the old one is intact."""
    root = reference["root"]
    sched = tmp_path / "sched"
    cmd = commands(corpus, root / "emb", root / "cl", sched, demo_tokenizer)["schedule"]
    run_process(*cmd)
    before = tree_bytes(sched)
    # another seed; its own tokenization (the first run filled the token cache, which would skip the
    # tokens stage and so the kill point in it)
    other = cmd[:-1] + [6, "--overwrite", "--token-cache", "none"]
    for point in ("schedule.tokens:1", "schedule.shard:2"):
        killed_at(other, point)
        assert_unfinished(sched, before)
        assert run_process("verify", sched).returncode == 0
    refused = run_process(*cmd[:-1], 6, check=False)  # without --overwrite: refused, naming what differs
    assert refused.returncode == 2 and "seed 5 -> 6" in refused.stderr
    run_process(*other)
    assert tree_bytes(sched) != before and run_process("verify", sched).returncode == 0


def test_one_run_per_output_directory(tmp_path, reference):
    root = reference["root"]
    cl = tmp_path / "cl"
    cmd = ["cluster", root / "emb", "--out", cl, "--k", 4, "--seed", 1]
    first = subprocess.Popen(clusterclip_command(*cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1", "CLUSTERCLIP_FAULT": "locked:1:stop"})
    try:
        deadline = time.monotonic() + 120
        lock = cl / ".clusterclip" / "lock"
        while not (lock.exists() and lock.read_text()):  # the first run holds the lock, frozen
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.01)
        second = run_process(*cmd, check=False)
        assert second.returncode == 75, second.stderr
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "another clusterclip run is writing it" in lines[0] and f"pid {first.pid}" in lines[0]
    finally:
        first.send_signal(signal.SIGKILL)  # a crash releases the lock
        first.wait()
    run_process(*cmd)
    assert tree_bytes(cl) == tree_bytes(root / "cl")
