"""Trust: every file read is checked against what its producer recorded, a good output is never
destroyed, a step writes only inside its --out, and the Makefile never overwrites on its own.

The tamper suite damages each kind of artifact in each way (swap rows, flip a byte, truncate,
delete, replace with another run's file, edit the manifest) and asserts that ``clusterclip verify``
and the next step that reads the file both refuse in one line naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clusterclip.artifacts.manifest import _checksum

from embed_fixtures import write_embed_dir
from helpers import REPO, assert_one_line_error, invoke, run_cli, stdlib_docs, tree_bytes, write_jsonl

pytestmark = pytest.mark.slow

MAXLEN = 16


@pytest.fixture(scope="module")
def runs(tmp_path_factory, demo_tokenizer) -> dict:
    """Two complete pipelines (other max length / seeds) to damage copies of, and to take files from."""
    root = tmp_path_factory.mktemp("trust")
    docs = stdlib_docs(41)
    corpus = write_jsonl(root / "corpus.jsonl", docs[:40])
    other_corpus = write_jsonl(root / "other" / "corpus.jsonl", docs[1:])
    out = {"root": root, "corpus": corpus, "tokenizer": demo_tokenizer}
    for name, source, max_length, seed in (("a", corpus, MAXLEN, 1), ("b", other_corpus, MAXLEN + 8, 2)):
        emb, cl, sched = root / f"emb-{name}", root / f"cl-{name}", root / f"sched-{name}"
        run_cli(["embed", source, "--out", emb, "--max-length", max_length, "--part-docs", 16])
        run_cli(["cluster", emb, "--out", cl, "--k", 4, "--seed", seed])
        run_cli(["schedule", emb, cl, "--out", sched, "--tokenizer", demo_tokenizer, "--format", "bin,megatron,parquet",
                 "--shard-tokens", 2000, "--epochs", 2, "--seed", seed])
        out[name] = {"embed": emb, "cluster": cl, "schedule": sched}
    return out


# --------------------------------------------------------------------------- tampering
def swap_rows(path: Path) -> None:
    if path.suffix == ".npy":
        x = np.load(path)
        x[[0, 1]] = x[[1, 0]]
        np.save(path, x)
    else:
        t = pq.read_table(path)
        order = np.arange(t.num_rows)
        order[[0, 1]] = [1, 0]
        pq.write_table(t.take(pa.array(order)), path)


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def delete(path: Path) -> None:
    path.unlink()


TAMPERS = {"swap rows": swap_rows, "flip a byte": flip_byte, "truncate": truncate, "delete": delete}


def damaged_copy(tmp_path: Path, runs: dict, step: str, rel: str, tamper: str) -> tuple[dict, Path]:
    """Copies of run a's three directories, with ``rel`` of ``step`` damaged by ``tamper``."""
    dirs = {}
    for s in ("embed", "cluster", "schedule"):
        dirs[s] = tmp_path / s
        shutil.copytree(runs["a"][s], dirs[s], symlinks=True)
    # the copies must point at each other: rebuild the downstream records by re-running on the copies
    run_cli(["cluster", dirs["embed"], "--out", dirs["cluster"], "--k", 4, "--seed", 1, "--overwrite"])
    run_cli(["schedule", dirs["embed"], dirs["cluster"], "--out", dirs["schedule"], "--tokenizer", runs["tokenizer"],
             "--format", "bin,megatron,parquet", "--shard-tokens", 2000, "--epochs", 2, "--seed", 1, "--overwrite"])
    target = dirs[step] / rel
    if tamper == "replace with another run's file":
        shutil.copyfile(runs["b"][step] / rel, target)
    else:
        TAMPERS[tamper](target)
    return dirs, target


#: artifact -> (step, relative path, the command that reads it next, or None: only `verify` does)
ARTIFACTS = {
    "embeddings part": ("embed", "embeddings-00001.npy", "cluster"),
    "docs.parquet": ("embed", "docs.parquet", "schedule"),
    "assignments.parquet": ("cluster", "assignments.parquet", "schedule"),
    "centroids.npy": ("cluster", "centroids.npy", None),
    "order.parquet": ("schedule", "order.parquet", "inspect"),
    "shards.json": ("schedule", "shards.json", "inspect"),
    "bin shard": ("schedule", "bin/train_000001.bin", None),
    "megatron index": ("schedule", "megatron/shard_000000.idx", None),
}
CASES = [(a, t) for a in ARTIFACTS for t in ("swap rows", "flip a byte", "truncate", "delete",
                                              "replace with another run's file")
         if t != "swap rows" or ARTIFACTS[a][1].endswith((".npy", ".parquet"))]


def next_step(kind: str, dirs: dict, tmp_path: Path, tokenizer: Path) -> list:
    return {
        "cluster": ["cluster", dirs["embed"], "--out", tmp_path / "next", "--k", 4, "--seed", 1],
        "schedule": ["schedule", dirs["embed"], dirs["cluster"], "--out", tmp_path / "next", "--tokenizer", tokenizer],
        "inspect": ["inspect", dirs["schedule"], "--sample", 0],
    }[kind]


@pytest.mark.parametrize("artifact, tamper", CASES, ids=[f"{a}-{t}" for a, t in CASES])
def test_tampering_is_refused_by_verify_and_by_the_next_step(tmp_path, runs, artifact, tamper):
    step, rel, reader = ARTIFACTS[artifact]
    dirs, target = damaged_copy(tmp_path, runs, step, rel, tamper)
    assert not target.exists() or target.read_bytes() != (runs["a"][step] / rel).read_bytes()
    code, output = invoke(["verify", dirs[step]])
    assert code == 3, output
    assert any(rel in line for line in output.splitlines() if line.startswith("error:")), output
    if reader is not None:
        code, output = invoke(next_step(reader, dirs, tmp_path, runs["tokenizer"]))
        assert_one_line_error(code, output, rel)


@pytest.mark.parametrize("step", ["embed", "cluster", "schedule"])
def test_an_edited_manifest_is_refused(tmp_path, runs, step):
    d = tmp_path / step
    shutil.copytree(runs["a"][step], d)
    manifest = json.loads((d / "manifest.json").read_text())
    key = {"embed": "n_docs", "cluster": "k", "schedule": "samples"}[step]
    manifest["statistics"][key] = manifest["statistics"][key] // 2  # e.g. k 4 -> 2
    (d / "manifest.json").write_text(json.dumps(manifest))
    code, output = invoke(["verify", d])
    assert code == 3 and "checksum" in output and "manifest.json" in output, output
    reader = {"embed": ["cluster", d, "--out", tmp_path / "x", "--k", 2],
              "cluster": ["schedule", runs["a"]["embed"], d, "--out", tmp_path / "x", "--dry-run"],
              "schedule": ["inspect", d]}[step]
    assert_one_line_error(*invoke(reader), "manifest.json", "checksum")


def test_a_re_checksummed_manifest_edit_is_still_caught_by_the_files(tmp_path, runs):
    """Someone edits k 4 -> 2 and recomputes the checksum: the cluster ids no longer fit."""
    cl = tmp_path / "cl"
    shutil.copytree(runs["a"]["cluster"], cl)
    manifest = json.loads((cl / "manifest.json").read_text())
    manifest["statistics"]["k"] = 2
    manifest["checksum"] = _checksum(manifest)
    (cl / "manifest.json").write_text(json.dumps(manifest))
    code, output = invoke(["schedule", runs["a"]["embed"], cl, "--out", tmp_path / "s", "--dry-run"])
    assert_one_line_error(code, output, "assignments.parquet", "outside 0..1")
    code, output = invoke(["verify", cl])
    assert code == 3 and "outside 0..1" in output


def test_a_rerun_never_says_already_done_over_missing_or_damaged_files(tmp_path, runs):
    a = runs["a"]
    for step, rel in (("embed", "embeddings-00000.npy"), ("schedule", "bin/train_000000.bin")):
        d = tmp_path / step
        shutil.copytree(a[step], d)
        truncate(d / rel)
        args = {"embed": ["embed", runs["corpus"], "--out", d, "--max-length", MAXLEN, "--part-docs", 16],
                "schedule": ["schedule", a["embed"], a["cluster"], "--out", d, "--tokenizer", runs["tokenizer"],
                             "--format", "bin,megatron,parquet", "--shard-tokens", 2000, "--epochs", 2,
                             "--seed", 1]}[step]
        code, output = invoke(args)
        assert code == 0 and "already done" not in output and "rebuilding" in output, output
        assert tree_bytes(d) == tree_bytes(a[step])


# --------------------------------------------------------------------------- nothing good is destroyed
def test_a_failed_run_keeps_the_old_output_and_its_corrected_rerun_needs_no_overwrite(tmp_path, runs):
    a = runs["a"]
    sched = tmp_path / "sched"
    shutil.copytree(a["schedule"], sched)
    before = tree_bytes(sched)
    # a token budget the clip cannot meet fails after tokenizing, inside the build
    base = ["schedule", a["embed"], a["cluster"], "--out", sched, "--tokenizer", runs["tokenizer"], "--dry-run",
            "--tokens", 10**9, "--overwrite"]
    code, output = invoke(base)
    line = assert_one_line_error(code, output, "--allow-partial")
    assert tree_bytes(sched) == before and invoke(["verify", sched])[0] == 0
    code, output = invoke(base + ["--allow-partial"])  # the fix the message suggests
    assert code == 0, output
    # a fresh --out: the failed build is ours and is discarded by the corrected rerun, no --overwrite
    fresh = tmp_path / "fresh"
    code, output = invoke(base[:4] + [fresh] + base[5:-1])
    assert assert_one_line_error(code, output, "--allow-partial") == line
    assert not (fresh / "manifest.json").exists() and (fresh / ".clusterclip" / "build").is_dir()
    code, output = invoke(base[:4] + [fresh] + base[5:-1] + ["--allow-partial"])
    assert code == 0, output


def test_nan_embeddings_do_not_cost_the_previous_clusters(tmp_path, runs):
    cl = tmp_path / "cl"
    shutil.copytree(runs["a"]["cluster"], cl)
    before = tree_bytes(cl)
    x = np.load(runs["a"]["embed"] / "embeddings-00000.npy").astype(np.float32)
    x[5] = np.nan
    bad = write_embed_dir(tmp_path / "bad-emb", x)
    code, output = invoke(["cluster", bad, "--out", cl, "--k", 4, "--overwrite"])
    assert_one_line_error(code, output, "NaN", "doc_id 5")
    assert tree_bytes(cl) == before and invoke(["verify", cl])[0] == 0


def test_a_step_never_replaces_its_own_input(tmp_path, runs):
    emb = tmp_path / "emb"
    shutil.copytree(runs["a"]["embed"], emb)
    before = tree_bytes(emb, private=True)
    code, output = invoke(["cluster", emb, "--out", emb, "--k", 4, "--overwrite"])
    assert_one_line_error(code, output, "is also an input")
    assert tree_bytes(emb, private=True) == before


@pytest.mark.parametrize("content", ['{"name": "my model", "version": 3}', "not even json"])
def test_a_directory_clusterclip_did_not_make_is_never_replaced(tmp_path, runs, content):
    foreign = tmp_path / "model"
    (foreign / "weights").mkdir(parents=True)
    (foreign / "manifest.json").write_text(content)
    (foreign / "weights" / "w.bin").write_bytes(b"precious")
    before = tree_bytes(foreign, private=True)
    code, output = invoke(["embed", runs["corpus"], "--out", foreign, "--max-length", MAXLEN, "--overwrite"])
    assert_one_line_error(code, output, str(foreign))
    assert tree_bytes(foreign, private=True) == before and not (foreign / ".clusterclip").exists()


def test_nothing_is_written_or_deleted_through_a_symlink_inside_out(tmp_path, runs):
    a = runs["a"]
    sched = tmp_path / "sched"
    shutil.copytree(a["schedule"], sched)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(sched / "bin", elsewhere)
    (elsewhere / "unrelated.txt").write_text("keep me")
    (sched / "bin").symlink_to(elsewhere, target_is_directory=True)
    before, before_elsewhere = tree_bytes(sched, private=True), tree_bytes(elsewhere)
    code, output = invoke(["schedule", a["embed"], a["cluster"], "--out", sched, "--tokenizer", runs["tokenizer"],
                           "--format", "bin,megatron,parquet", "--shard-tokens", 2000, "--epochs", 2, "--seed", 9,
                           "--overwrite"])
    assert_one_line_error(code, output, str(sched / "bin"), "symbolic link")
    assert tree_bytes(elsewhere) == before_elsewhere
    assert {k: v for k, v in tree_bytes(sched, private=True).items() if not k.startswith(".clusterclip/")} == \
        {k: v for k, v in before.items() if not k.startswith(".clusterclip/")}


def test_a_linked_private_directory_is_refused(tmp_path, runs):
    out = tmp_path / "emb"
    out.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (out / ".clusterclip").symlink_to(target, target_is_directory=True)
    code, output = invoke(["embed", runs["corpus"], "--out", out, "--max-length", MAXLEN])
    assert_one_line_error(code, output, ".clusterclip")
    assert list(target.iterdir()) == []


def test_a_linked_build_of_the_same_job_is_not_resumed(tmp_path, runs):
    """OUT/.clusterclip/build -> elsewhere, holding the job.json this very run would resume."""
    a = runs["a"]
    cl = tmp_path / "cl"
    args = ["cluster", a["embed"], "--out", cl, "--k", 4, "--seed", 1]
    shutil.copytree(a["cluster"], cl)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (cl / "centroids.npy").unlink()  # damaged: the rerun rebuilds, in a build of the same job
    job = {k: json.loads((cl / "manifest.json").read_text())[k] for k in ("step", "settings", "inputs")}
    (elsewhere / "job.json").write_text(json.dumps(job))
    (elsewhere / "keep.txt").write_text("keep me")
    shutil.rmtree(cl / ".clusterclip" / "build", ignore_errors=True)
    (cl / ".clusterclip" / "build").symlink_to(elsewhere, target_is_directory=True)
    before = tree_bytes(elsewhere)
    code, output = invoke(args)
    assert_one_line_error(code, output, ".clusterclip/build", "symbolic link")
    assert tree_bytes(elsewhere) == before and sorted(p.name for p in elsewhere.iterdir()) == ["job.json", "keep.txt"]


@pytest.mark.parametrize("how", ["copied", "checksum broken"])
def test_a_manifest_alone_does_not_make_a_directory_ours(tmp_path, runs, how):
    """A clusterclip manifest copied into a directory (or ours, edited) never lets a run replace its files."""
    a = runs["a"]
    d = tmp_path / "d"
    if how == "copied":
        d.mkdir()
        (d / "centroids.npy").write_bytes(b"the user's own file")
        shutil.copyfile(a["cluster"] / "manifest.json", d / "manifest.json")
    else:
        shutil.copytree(a["cluster"], d)
        m = json.loads((d / "manifest.json").read_text())
        m["statistics"]["k"] = 2
        (d / "manifest.json").write_text(json.dumps(m))
    before = tree_bytes(d, private=True)
    for extra in ([], ["--overwrite"]):
        code, output = invoke(["cluster", a["embed"], "--out", d, "--k", 4, "--seed", 1, *extra])
        assert_one_line_error(code, output, str(d))
        assert tree_bytes(d, private=True) == before


def test_an_input_file_inside_out_is_refused_by_name(tmp_path, runs):
    emb = tmp_path / "emb"
    shutil.copytree(runs["a"]["embed"], emb)
    inside = emb / "more.jsonl"
    shutil.copyfile(runs["corpus"], inside)
    before = tree_bytes(emb, private=True)
    code, output = invoke(["embed", runs["corpus"], inside, "--out", emb, "--max-length", MAXLEN, "--part-docs", 16])
    assert "already done" not in output
    assert_one_line_error(code, output, str(inside), "--out")
    assert tree_bytes(emb, private=True) == before


def test_a_manifest_without_its_trailing_newline_is_the_same_manifest(tmp_path, runs):
    """An editor dropping the final newline used to give "was clustered from X, not from X"."""
    a = runs["a"]
    emb, cl = tmp_path / "emb", tmp_path / "cl"
    shutil.copytree(a["embed"], emb)
    run_cli(["cluster", emb, "--out", cl, "--k", 4, "--seed", 1])
    (emb / "manifest.json").write_bytes((emb / "manifest.json").read_bytes().rstrip(b"\n"))
    code, output = invoke(["schedule", emb, cl, "--out", tmp_path / "s", "--tokenizer", runs["tokenizer"], "--dry-run"])
    assert code == 0, output
    assert invoke(["verify", emb])[0] == 0
    # really rebuilt at the same path: the message says so instead of naming the path twice
    run_cli(["embed", runs["corpus"], "--out", emb, "--max-length", MAXLEN + 1, "--part-docs", 16, "--overwrite"])
    code, output = invoke(["schedule", emb, cl, "--out", tmp_path / "s2", "--tokenizer", runs["tokenizer"], "--dry-run"])
    line = assert_one_line_error(code, output, "rebuilt or changed since")
    assert line.count(str(emb)) <= 2 and "not from" not in line


def test_cluster_refuses_a_damaged_docs_parquet(tmp_path, runs):
    emb = tmp_path / "emb"
    shutil.copytree(runs["a"]["embed"], emb)
    flip_byte(emb / "docs.parquet")
    code, output = invoke(["cluster", emb, "--out", tmp_path / "cl", "--k", 4])
    assert_one_line_error(code, output, "docs.parquet", "sha256")
    assert not (tmp_path / "cl").exists()


# --------------------------------------------------------------------------- the Makefile
def make(work: Path, *args, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1"}
    result = subprocess.run(["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "-C", str(REPO),
                             f"VENV={REPO / '.venv'}", *map(str, args)], capture_output=True, text=True, env=env,
                            timeout=900)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_makefile_pipeline_never_overwrites_on_its_own(tmp_path, runs):
    work = tmp_path / "work"
    common = [f"CORPUS={runs['corpus']}", f"WORK={work}", f"TOKENIZER={runs['tokenizer']}",
              "EMBED_FLAGS=--max-length 16 --id-column id"]
    make(work, "schedule", "K=4", *common)
    first = {s: tree_bytes(work / s) for s in ("emb", "cl", "schedule")}
    again = make(work, "schedule", "K=4", *common)
    assert again.stdout.count("already done") == 3
    # another K: refused, naming the setting, nothing replaced
    refused = make(work, "schedule", "K=5", *common, check=False)
    assert refused.returncode != 0 and "k 4 -> 5" in refused.stderr and "--overwrite" in refused.stderr
    # forgetting EMBED_FLAGS on a later call no longer re-embeds with defaults
    refused = make(work, "cluster", "K=4", *common[:3], check=False)
    assert refused.returncode != 0 and "id_column 'id' -> None" in refused.stderr
    assert {s: tree_bytes(work / s) for s in ("emb", "cl", "schedule")} == first
    make(work, "cluster", "K=5", *common, "OVERWRITE=--overwrite")
    assert json.loads((work / "cl" / "manifest.json").read_text())["settings"]["k"] == 5
