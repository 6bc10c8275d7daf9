"""Kill -9 each step part-way, run the same command again: it resumes and the final outputs
are byte-identical to an uninterrupted run; running a step twice gives the same bytes.

These run the real CLI in subprocesses (``python -m clusterclip``), because only a
separate process can be SIGKILLed at an arbitrary moment.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import stdlib_docs, write_jsonl

JOB_FILE = ".clusterclip-job.json"


def clusterclip(*args) -> list[str]:
    return [sys.executable, "-m", "clusterclip", *map(str, args)]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stderr}"
    return result


def run_and_kill(cmd: list[str], out: Path, when: tuple) -> bool:
    """Start ``cmd``; SIGKILL it when ``when`` happens. Returns whether it was killed before finishing.

    ``when`` is ``("files", pattern, count)`` — as soon as ``count`` files match ``pattern`` under
    ``out`` — or ``("seconds", s)``. (Startup takes part of any run, so the time-based kills
    are given as a fraction of an uninterrupted run's wall time; see :func:`kill_point`.)
    """
    env = {**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    start = time.monotonic()
    try:
        while proc.poll() is None:
            if when[0] == "files":
                hit = len(glob.glob(str(out / when[1]))) >= when[2]
            else:
                hit = time.monotonic() - start >= when[1]
            if hit:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.002)
            if time.monotonic() - start > 300:
                raise TimeoutError(cmd)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative path -> bytes)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def assert_complete_files_are_not_partial(directory: Path) -> None:
    """After a kill, a directory without a manifest must not look finished."""
    if (directory / "manifest.json").exists():
        return
    assert (directory / JOB_FILE).exists() or not any(directory.iterdir())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("rel") / "corpus.jsonl", stdlib_docs(64))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus, demo_tokenizer) -> dict:
    """One uninterrupted run of every step, and a second identical run for determinism."""
    root = tmp_path_factory.mktemp("ref")
    cmds = commands(corpus, root / "emb", root / "cl", root / "sched", demo_tokenizer)
    seconds = {}
    for name in ("embed", "cluster", "schedule"):
        start = time.monotonic()
        run(cmds[name])
        seconds[name] = time.monotonic() - start
    return {"root": root, "cmds": cmds, "seconds": seconds}


def kill_point(when: tuple, reference: dict, step: str) -> tuple:
    """``("fraction", f)`` -> ``("seconds", f * the uninterrupted run's wall time)``."""
    if when[0] == "fraction":
        return ("seconds", when[1] * reference["seconds"][step])
    return when


def commands(corpus: Path, emb: Path, cl: Path, sched: Path, tokenizer: Path) -> dict[str, list[str]]:
    return {
        "embed": clusterclip("embed", corpus, "--out", emb, "--max-length", 32, "--part-docs", 8,
                             "--window-docs", 8),
        "cluster": clusterclip("cluster", emb, "--out", cl, "--k", 4, "--seed", 1),
        "schedule": clusterclip("schedule", emb, cl, "--out", sched, "--tokenizer", tokenizer,
                                "--format", "bin,megatron,parquet", "--shard-tokens", 400, "--epochs", 3,
                                "--max-repeats", 3, "--seed", 5),
    }


def test_a_second_run_of_every_step_is_byte_identical(tmp_path, reference, corpus, demo_tokenizer):
    root = reference["root"]
    # same upstream directories, fresh outputs: cluster and schedule depend only on their inputs
    cmds = commands(corpus, tmp_path / "emb", root / "cl2", tmp_path / "sched", demo_tokenizer)
    run(cmds["embed"])
    assert snapshot(tmp_path / "emb") == snapshot(root / "emb")
    cl2 = tmp_path / "cl2"
    run(clusterclip("cluster", root / "emb", "--out", cl2, "--k", 4, "--seed", 1))
    assert snapshot(cl2) == snapshot(root / "cl")
    sched2 = tmp_path / "sched2"
    run(commands(corpus, root / "emb", root / "cl", sched2, demo_tokenizer)["schedule"])
    assert snapshot(sched2) == snapshot(root / "sched")


@pytest.mark.parametrize("when", [("files", "embeddings-*.npy", 1), ("files", "embeddings-*.npy", 4),
                                  ("fraction", 0.7)], ids=["after-1-part", "after-4-parts", "at-70%"])
def test_embed_resumes_after_kill_9(tmp_path, reference, corpus, demo_tokenizer, when):
    emb = tmp_path / "emb"
    cmd = commands(corpus, emb, tmp_path / "cl", tmp_path / "s", demo_tokenizer)["embed"]
    killed = run_and_kill(cmd, emb, kill_point(when, reference, "embed"))
    if killed and emb.exists():
        assert_complete_files_are_not_partial(emb)
    finished_before = (emb / "manifest.json").exists()  # the kill may come after the last write
    out = run(cmd)
    assert snapshot(emb) == snapshot(reference["root"] / "emb")
    assert ("already done" in out.stdout) == finished_before


@pytest.mark.parametrize("when", [("files", "*", 1), ("files", "centroids.npy", 1),
                                  ("files", "assignments.parquet", 1), ("fraction", 0.8)],
                         ids=["after-start", "after-training", "after-assignments", "at-80%"])
def test_cluster_resumes_after_kill_9(tmp_path, reference, when):
    root = reference["root"]
    cl = tmp_path / "cl"
    cmd = clusterclip("cluster", root / "emb", "--out", cl, "--k", 4, "--seed", 1)
    if run_and_kill(cmd, cl, kill_point(when, reference, "cluster")) and cl.exists():
        assert_complete_files_are_not_partial(cl)
    run(cmd)
    assert snapshot(cl) == snapshot(root / "cl")


@pytest.mark.parametrize("when", [("files", "bin/*.bin", 1), ("files", "parquet/*.parquet", 3),
                                  ("fraction", 0.6), ("fraction", 0.9)],
                         ids=["after-1-shard", "after-3-shards", "at-60%", "at-90%"])
def test_schedule_resumes_after_kill_9(tmp_path, reference, corpus, demo_tokenizer, when):
    root = reference["root"]
    sched = tmp_path / "sched"
    cmd = commands(corpus, root / "emb", root / "cl", sched, demo_tokenizer)["schedule"]
    if run_and_kill(cmd, sched, kill_point(when, reference, "schedule")) and sched.exists():
        assert_complete_files_are_not_partial(sched)
    run(cmd)
    assert snapshot(sched) == snapshot(root / "sched")


def test_finished_step_rerun_is_a_no_op(reference):
    result = run(reference["cmds"]["cluster"])
    assert "already done" in result.stdout
