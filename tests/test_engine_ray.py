"""``--engine ray`` gives the local engine's directories: embed (docs.parquet bytes, embeddings within
tolerance), cluster and schedule (every file byte-identical); a driver killed at a fault point
resumes to the same bytes; a finished local run is "already done" for the Ray engine.

These run on a local 2-CPU Ray started once for the module (about 5 s). They are skipped only
where Ray is not installed *and* ``CI`` is unset: CI installs the ``ray`` extra and runs them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import (
    assert_one_line_error,
    invoke,
    load_script,
    run_cli,
    run_process,
    stdlib_docs,
    tree_bytes,
    write_jsonl,
    write_parquet,
)

if importlib.util.find_spec("ray") is None and not os.environ.get("CI"):
    pytest.skip("Ray is not installed (pip install 'clusterclip[ray]'); CI installs it", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# float32: the actors batch documents as Ray hands them over, not in the local engine's windows, and bfloat16
# rounds differently in another batch (cosine above 0.9999); float32 at this size agrees within 1e-5
EMBED_ARGS = ["--max-length", 16, "--id-column", "id", "--part-docs", 12, "--window-docs", 8, "--dtype", "float32"]
ALL_FORMATS = "bin,raw,megatron,datatrove,parquet,mds"


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray with 2 CPUs and a small object store for this module; its GCS address."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def work(tmp_path_factory, ray_address) -> Path:
    """A corpus of two files (JSON lines with an empty document, Parquet with small row groups), a
    tokenizer, and the local engine's embed + cluster directories."""
    root = tmp_path_factory.mktemp("engine")
    docs = stdlib_docs(40)
    write_jsonl(root / "corpus" / "a.jsonl", docs[:17] + [{"text": "  ", "id": "blank"}] + docs[17:22])
    write_parquet(root / "corpus" / "b.parquet", {"text": [d["text"] for d in docs[22:]],
                                                  "id": [d["id"] for d in docs[22:]]}, row_group_size=5)
    tok = load_script("train_demo_tokenizer").train(write_jsonl(root / "tok" / "train.jsonl", docs), vocab_size=500)
    tok.save(str(root / "tokenizer.json"))
    run_cli(["embed", root / "corpus", "--out", root / "emb", *EMBED_ARGS])
    run_cli(["cluster", root / "emb", "--out", root / "cl", "--k", 3])
    return root


def schedule_args(work: Path, out: Path, *extra, shard_tokens: int = 200) -> list:
    return ["schedule", work / "emb", work / "cl", "--out", out, "--tokenizer", work / "tokenizer.json",
            "--epochs", 2, "--shard-tokens", shard_tokens, *extra]


def embeddings(path: Path) -> np.ndarray:
    return np.concatenate([np.load(p) for p in sorted(Path(path).glob("embeddings-*.npy"))])


def test_embed_on_ray_equals_local(work, tmp_path):
    run_cli(["embed", work / "corpus", "--out", tmp_path / "emb", *EMBED_ARGS, "--engine", "ray"])
    local, ray_ = tree_bytes(work / "emb"), tree_bytes(tmp_path / "emb")
    assert sorted(local) == sorted(ray_)  # the same parts
    assert ray_["docs.parquet"] == local["docs.parquet"]
    np.testing.assert_allclose(embeddings(tmp_path / "emb"), embeddings(work / "emb"), atol=1e-5)
    m_local, m_ray = (json.loads(local["manifest.json"]), json.loads(ray_["manifest.json"]))
    for key in ("settings", "statistics", "accounting", "inputs"):
        assert m_ray[key] == m_local[key], key


def test_cluster_on_ray_is_byte_identical(work, tmp_path):
    run_cli(["cluster", work / "emb", "--out", tmp_path / "cl", "--k", 3, "--engine", "ray"])
    assert tree_bytes(tmp_path / "cl") == tree_bytes(work / "cl")


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.sampled_from(["samples", "align", "pack"]), shard_tokens=st.integers(40, 400),
       convention=st.sampled_from(["eos-after", "llm.c"]))
def test_schedule_on_ray_is_byte_identical(work, cut, shard_tokens, convention):
    formats = {"samples": ALL_FORMATS, "align": "bin,raw,datatrove", "pack": "parquet,mds,bin"}[cut]
    extra = {"samples": [], "align": ["--align-tokens", 16], "pack": ["--pack", 24]}[cut]
    with tempfile.TemporaryDirectory(dir=work) as d:
        for out, engine in (("local", "local"), ("ray", "ray")):
            run_cli(schedule_args(work, Path(d) / out, "--format", formats, "--convention", convention, *extra,
                                  "--engine", engine, "--token-cache", Path(d) / f"cache-{out}",  # Ray tokenizes
                                  shard_tokens=shard_tokens))
        local, ray_ = tree_bytes(Path(d) / "local"), tree_bytes(Path(d) / "ray")
        assert sorted(ray_) == sorted(local)
        assert [k for k in local if ray_[k] != local[k]] == []  # order.parquet, every shard, shards.json, manifest


def test_a_finished_local_run_is_already_done_for_the_ray_engine(work, tmp_path):
    run_cli(schedule_args(work, tmp_path / "s", "--format", "bin"))
    before = tree_bytes(tmp_path / "s", private=True)
    for args, step in (([*schedule_args(work, tmp_path / "s", "--format", "bin")], "schedule"),
                       (["embed", work / "corpus", "--out", work / "emb", *EMBED_ARGS], "embed"),
                       (["cluster", work / "emb", "--out", work / "cl", "--k", 3], "cluster")):
        out = run_cli([*args, "--engine", "ray"]).output
        assert f"{step}: " in out and "already done" in out, out
    assert tree_bytes(tmp_path / "s", private=True) == before


def test_schedule_driver_killed_on_ray_resumes_to_the_same_bytes(work, tmp_path, ray_address):
    args = [*schedule_args(work, tmp_path / "s", "--format", ALL_FORMATS), "--engine", "ray",
            "--ray-address", ray_address]
    run_cli(schedule_args(work, tmp_path / "local", "--format", ALL_FORMATS, "--token-cache", tmp_path / "cache-local"))
    killed = run_process(*args, check=False, env={"CLUSTERCLIP_FAULT": "schedule.shard:3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    build = tmp_path / "s" / ".clusterclip" / "build"
    journal = [json.loads(line) for line in (build / ".work" / "shards-journal.jsonl").read_text().splitlines()]
    assert len(journal) == 3 * len(ALL_FORMATS.split(","))  # three shards journaled in every format
    kept = {e["files"][0]["path"]: (build / e["files"][0]["path"]).stat().st_mtime_ns
            for e in journal if e["format"] == "bin"}
    run_process(*args)
    assert tree_bytes(tmp_path / "s") == tree_bytes(tmp_path / "local")
    # the journaled shards were kept (moved into place by the commit), not written again
    assert {p: (tmp_path / "s" / p).stat().st_mtime_ns for p in kept} == kept


def test_schedule_driver_killed_while_tokenizing_on_ray_resumes_to_the_same_bytes(work, tmp_path, ray_address):
    args = [*schedule_args(work, tmp_path / "s", "--format", "bin,parquet"), "--engine", "ray",
            "--ray-address", ray_address]
    run_cli(schedule_args(work, tmp_path / "local", "--format", "bin,parquet", "--token-cache", tmp_path / "cache-local"))
    killed = run_process(*args, check=False, env={"CLUSTERCLIP_FAULT": "schedule.tokens:1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    cache = Path(os.environ["CLUSTERCLIP_CACHE"]) / "tokens"  # the ranges are built in the token cache's build/
    assert list(cache.glob("*/build/tokens.parts/*/meta.json"))
    run_process(*args)
    assert tree_bytes(tmp_path / "s") == tree_bytes(tmp_path / "local")


def test_embed_driver_killed_on_ray_resumes_to_the_same_directory(work, tmp_path, ray_address):
    args = ["embed", work / "corpus", "--out", tmp_path / "emb", *EMBED_ARGS, "--engine", "ray",
            "--ray-address", ray_address]
    killed = run_process(*args, check=False, env={"CLUSTERCLIP_FAULT": "embed.part:2"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(list((tmp_path / "emb" / ".clusterclip" / "build").glob("embeddings-*.npy"))) == 2
    run_process(*args)
    local, resumed = tree_bytes(work / "emb"), tree_bytes(tmp_path / "emb")
    assert sorted(resumed) == sorted(local) and resumed["docs.parquet"] == local["docs.parquet"]
    np.testing.assert_allclose(embeddings(tmp_path / "emb"), embeddings(work / "emb"), atol=1e-5)


def test_a_bad_row_read_by_a_ray_task_is_one_line_naming_file_and_line(work, tmp_path):
    docs = stdlib_docs(6)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(d) + "\n" for d in docs[:4]) + "{not json\n")
    code, output = invoke(["embed", bad, "--out", tmp_path / "emb", "--max-length", 16, "--engine", "ray"])
    assert_one_line_error(code, output, str(bad), "line 5", "malformed JSON")
    assert not (tmp_path / "emb" / "manifest.json").exists()


def test_a_real_ray_process_prints_one_error_line_and_nothing_of_rays_own(work, tmp_path, ray_address):
    """The CLI as a process (Ray's C++ core worker writes to descriptor 2, out of a test runner's reach): a bad
    row read by a task is one ``error:`` line (it was ~130 lines of tracebacks), a successful ``-q`` run
    prints nothing on stderr (it printed Ray's log lines)."""
    docs = stdlib_docs(6)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(d) + "\n" for d in docs[:4]) + "{not json\n")
    ray_args = ["--max-length", 16, "--engine", "ray", "--ray-address", ray_address, "-q"]
    failed = run_process("embed", bad, "--out", tmp_path / "bad", *ray_args, check=False, timeout=240)
    assert failed.returncode != 0
    lines = failed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), failed.stderr
    assert_one_line_error(failed.returncode, failed.stderr, str(bad), "line 5", "malformed JSON")
    good = write_jsonl(tmp_path / "good.jsonl", docs)
    done = run_process("embed", good, "--out", tmp_path / "good", *ray_args, timeout=240)
    assert done.stderr == "", done.stderr
    assert done.stdout.startswith("embed: 6 docs") and len(done.stdout.splitlines()) == 1, done.stdout


def test_ray_options_are_refused_without_the_ray_engine_and_partitions_with_it(work, tmp_path):
    code, output = invoke(["embed", work / "corpus", "--out", tmp_path / "e", "--ray-address", "auto"])
    assert_one_line_error(code, output, "--ray-address", "--engine ray")
    code, output = invoke(["embed", work / "corpus", "--out", tmp_path / "e", "--engine", "ray",
                           "--num-partitions", 2])
    assert_one_line_error(code, output, "--num-partitions", "--engine local")
    assert not (tmp_path / "e").exists()
    for args in (["cluster", work / "emb", "--out", tmp_path / "c", "--k", 3],
                 schedule_args(work, tmp_path / "c", "--format", "bin")):  # nobody listens on port 1
        code, output = invoke([*args, "--engine", "ray", "--ray-address", "127.0.0.1:1"])
        assert_one_line_error(code, output, "--ray-address 127.0.0.1:1", "nothing answers")
        assert not (tmp_path / "c").exists()  # refused before --out is touched


def test_the_local_engine_never_imports_ray(work, tmp_path):
    """Ray is an optional extra: embed, cluster and schedule with the default engine run without it."""
    import subprocess
    import sys

    code = f"""
import sys
from clusterclip.cli import cli
for args in (["embed", {str(work / "corpus")!r}, "--out", {str(tmp_path / "emb")!r}, "--max-length", "16"],
             ["cluster", {str(work / "emb")!r}, "--out", {str(tmp_path / "cl")!r}, "--k", "3"],
             ["schedule", {str(work / "emb")!r}, {str(work / "cl")!r}, "--out", {str(tmp_path / "s")!r},
              "--tokenizer", {str(work / "tokenizer.json")!r}]):
    try:
        cli.main(args, standalone_mode=False)
    except SystemExit:
        pass
print("ray imported:", [m for m in sys.modules if m == "ray" or m.startswith("ray.")][:3])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240,
                         env={**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1"})
    assert out.returncode == 0, out.stderr
    assert "ray imported: []" in out.stdout, out.stdout
    assert (tmp_path / "s" / "manifest.json").is_file()
