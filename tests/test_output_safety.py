"""Path safety and ownership of ``--out`` (artifacts.output.OutputDir), as an adversary would try it.

Every combination of a planted link or a doubtful manifest, the same or another job, with or
without ``--overwrite``: nothing outside ``--out`` is ever written or deleted, a refusal is one
line and leaves ``--out`` as it was, and a directory is never taken as clusterclip's on a manifest
alone (docs/ARCHITECTURE.md, "What makes a directory clusterclip's").
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import pytest

from clusterclip.artifacts import Job, OutputDir, build_manifest
from clusterclip.artifacts.manifest import check_manifest, manifest_digest
from clusterclip.artifacts.output import OWNER_FILE
from clusterclip.errors import ClusterClipError, IntegrityError

JOBS = {
    "a": (Job("embed", {"model": "m", "max_length": 16}, {"files": []}),
          {"a.bin": b"A" * 100, "sub/b.bin": b"B" * 50, "old/c.bin": b"C" * 10}),
    "b": (Job("embed", {"model": "m", "max_length": 32}, {"files": []}),
          {"a.bin": b"a" * 100, "sub/b.bin": b"b" * 50}),
}


def run_step(out: Path, name: str, *, overwrite: bool = False) -> str:
    """One run of job ``name`` into ``out`` through OutputDir (what every step does); its state."""
    job, files = JOBS[name]
    with OutputDir(out, job, overwrite=overwrite) as run:
        if run.state == "done":
            return "done"
        for rel, data in files.items():
            (run.build / rel).parent.mkdir(parents=True, exist_ok=True)
            (run.build / rel).write_bytes(data)
        run.commit(build_manifest(job.step, job.settings, job.inputs, run.records(sorted(files)), {}))
        return run.state


def snapshot(root: Path) -> dict:
    """Every entry under ``root`` (links as links, not followed): relative path -> bytes / link target / dir."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir",)
            else:
                out[rel] = p.read_bytes()
    return out


def outside_private(snap: dict) -> dict:
    return {k: v for k, v in snap.items() if not k.startswith(".clusterclip")}


def plant(kind: str, out: Path, elsewhere: Path, same_job: bool) -> None:
    """Damage or forge ``out`` (a finished output of job "a"): the attack ``kind``."""
    job_name = "a" if same_job else "b"
    private = out / ".clusterclip"
    if kind == "link at build dir":  # a build of the very job this run asks for, elsewhere
        target = elsewhere / "build"
        target.mkdir()
        (target / "job.json").write_text(json.dumps(JOBS[job_name][0].record()))
        (target / "a.bin").write_bytes(b"half")
        (private / "build").symlink_to(target, target_is_directory=True)
    elif kind == "link inside build":  # a real build of the job, holding a link
        shutil.rmtree(private / "build", ignore_errors=True)
        (private / "build").mkdir()
        (private / "build" / "job.json").write_text(json.dumps(JOBS[job_name][0].record()))
        (private / "build" / "sub").symlink_to(elsewhere / "sub", target_is_directory=True)
    elif kind in ("link at subdir", "link at old-only subdir"):
        sub = "sub" if kind == "link at subdir" else "old"
        shutil.rmtree(elsewhere / sub)
        shutil.move(out / sub, elsewhere / sub)
        (out / sub).symlink_to(elsewhere / sub, target_is_directory=True)
    elif kind == "link at file":
        (elsewhere / "a.bin").write_bytes((out / "a.bin").read_bytes())
        (out / "a.bin").unlink()
        (out / "a.bin").symlink_to(elsewhere / "a.bin")
    elif kind == "link at manifest":
        shutil.move(out / "manifest.json", elsewhere / "manifest.json")
        (out / "manifest.json").symlink_to(elsewhere / "manifest.json")
    elif kind in ("link at committed.json", "link at commit.json"):
        name = OWNER_FILE if kind == "link at committed.json" else "commit.json"
        (elsewhere / name).write_text((private / OWNER_FILE).read_text())
        (private / name).unlink(missing_ok=True)
        (private / name).symlink_to(elsewhere / name)
    elif kind == "manifest copied into a foreign directory":
        manifest = (out / "manifest.json").read_bytes()
        shutil.rmtree(out)
        out.mkdir()
        (out / "a.bin").write_bytes(b"precious" * 12 + b"....")  # 100 bytes: the size the manifest records
        (out / "mine.txt").write_text("precious")
        (out / "manifest.json").write_bytes(manifest)
    elif kind == "manifest copied, empty .clusterclip":
        plant("manifest copied into a foreign directory", out, elsewhere, same_job)
        (out / ".clusterclip").mkdir()
    elif kind == "foreign files, empty .clusterclip":
        shutil.rmtree(out)
        (out / ".clusterclip").mkdir(parents=True)
        (out / "a.bin").write_text("precious")
    elif kind == "checksum broken":
        m = json.loads((out / "manifest.json").read_text())
        m["statistics"]["n_docs"] = 7
        (out / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    elif kind == "committed.json missing":
        (private / OWNER_FILE).unlink()
    elif kind == "manifest of another output":  # a genuine manifest, another directory's record
        m = json.loads((out / "manifest.json").read_text())
        other = build_manifest(m["step"], m["settings"], m["inputs"], m["outputs"], {"n_docs": 1})
        (out / "manifest.json").write_text(json.dumps(other, indent=2, sort_keys=True) + "\n")
    elif kind == "manifest without its trailing newline":  # harmless: still ours
        (out / "manifest.json").write_bytes((out / "manifest.json").read_bytes().rstrip(b"\n"))
    elif kind != "none":
        raise AssertionError(kind)


#: attacks -> whether the run must be refused whatever the job and --overwrite ("overwrite": unless --overwrite)
ATTACKS = {
    "none": False,
    "manifest without its trailing newline": False,
    "link at file": None,  # refused whenever the run would write (a finished output is only read)
    "link at subdir": None,
    "link at old-only subdir": None,  # refused whenever the run would write
    "link at build dir": True,
    "link inside build": None,
    "link at manifest": True,
    "link at committed.json": True,
    "link at commit.json": True,
    "manifest copied into a foreign directory": True,
    "manifest copied, empty .clusterclip": True,
    "foreign files, empty .clusterclip": True,
    "checksum broken": True,
    "committed.json missing": "overwrite",  # an earlier clusterclip's output: replaced (every file checked) with it
    "manifest of another output": True,
}
CASES = list(itertools.product(ATTACKS, (True, False), (True, False)))


@pytest.mark.parametrize("attack, same_job, overwrite", CASES,
                         ids=[f"{a}-{'same' if s else 'other'} job-{'overwrite' if o else 'keep'}" for a, s, o in CASES])
def test_nothing_outside_out_is_touched_and_ownership_is_proven(tmp_path, attack, same_job, overwrite):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    run_step(out, "a")
    elsewhere.mkdir()
    for rel in ("a.bin", "sub/b.bin", "old/c.bin", "keep.txt"):  # the same names as the output's
        (elsewhere / rel).parent.mkdir(parents=True, exist_ok=True)
        (elsewhere / rel).write_bytes(b"not yours " + rel.encode())
    plant(attack, out, elsewhere, same_job)
    before_out, before_elsewhere = snapshot(out), snapshot(elsewhere)
    try:
        state = run_step(out, "a" if same_job else "b", overwrite=overwrite)
    except ClusterClipError as e:
        refused = str(e)
    else:
        refused = None
    assert snapshot(elsewhere) == before_elsewhere, refused  # never written or deleted through a link
    must_refuse = ATTACKS[attack]
    if must_refuse is None:  # refused when the run writes (a finished output of the same job is left alone)
        must_refuse = not same_job
    elif must_refuse == "overwrite":
        must_refuse = not overwrite
    if refused is not None:
        assert "\n" not in refused and refused.startswith(("/", "--out")), refused
        assert outside_private(snapshot(out)) == outside_private(before_out)
        assert must_refuse or (not same_job and not overwrite), refused  # other settings need --overwrite
    else:
        assert not must_refuse, f"{attack}: accepted ({state})"
        assert state == ("done" if same_job else "fresh")
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["settings"] == JOBS["a" if same_job else "b"][0].settings
        assert json.loads((out / ".clusterclip" / OWNER_FILE).read_text())["manifest_sha256"] == manifest_digest(out)


@pytest.mark.parametrize("overwrite", [True, False])
def test_a_linked_subdirectory_of_the_old_output_is_refused_before_its_manifest_is_touched(tmp_path, overwrite):
    """The old output has ``old/c.bin``, the new one does not: ``old -> elsewhere`` used to be found
    mid-commit, after the old manifest was gone (and every later run stuck on it)."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    run_step(out, "a")
    elsewhere.mkdir()
    shutil.move(out / "old", elsewhere / "old")
    (out / "old").symlink_to(elsewhere / "old", target_is_directory=True)
    manifest = (out / "manifest.json").read_bytes()
    with pytest.raises(ClusterClipError, match="symbolic link" if overwrite else "--overwrite"):
        run_step(out, "b", overwrite=overwrite)
    assert (out / "manifest.json").read_bytes() == manifest
    assert not (out / ".clusterclip" / "commit.json").exists()
    assert (elsewhere / "old" / "c.bin").read_bytes() == b"C" * 10


def test_a_commit_killed_half_way_is_still_ours_and_rolls_forward(tmp_path):
    """The marker is written before the new manifest: every crash point of the commit stays ours."""
    out = tmp_path / "out"
    run_step(out, "a")
    job, files = JOBS["b"]
    with OutputDir(out, job, overwrite=True) as run:
        for rel, data in files.items():
            (run.build / rel).parent.mkdir(parents=True, exist_ok=True)
            (run.build / rel).write_bytes(data)
        manifest = build_manifest(job.step, job.settings, job.inputs, run.records(sorted(files)), {})
        run._roll_forward = lambda: None  # the commit is "killed" right after writing its plan
        run.commit(manifest)
    (out / "manifest.json").unlink()  # ... and after the old manifest went
    (out / "a.bin").unlink()
    os.replace(run.build / "a.bin", out / "a.bin")  # ... and one file was moved
    assert run_step(out, "b") == "done"
    assert json.loads((out / "manifest.json").read_text())["settings"] == job.settings
    assert not (out / "old").exists() and (out / "sub" / "b.bin").read_bytes() == b"b" * 50


def test_a_file_the_old_output_does_not_list_is_never_replaced(tmp_path):
    out = tmp_path / "out"
    JOBS["c"] = (Job("embed", {"model": "c"}, {"files": []}), {"a.bin": b"x", "new.bin": b"y"})
    try:
        run_step(out, "a")
        (out / "new.bin").write_text("the user's")
        with pytest.raises(ClusterClipError, match="new.bin"):
            run_step(out, "c", overwrite=True)
        assert (out / "new.bin").read_text() == "the user's" and (out / "old" / "c.bin").exists()
    finally:
        del JOBS["c"]


def test_a_failed_run_that_cannot_resume_leaves_no_build(tmp_path):
    out = tmp_path / "out"
    job, _ = JOBS["a"]
    with pytest.raises(RuntimeError), OutputDir(out, job, resumable=False) as run:
        (run.build / "half.bin").write_bytes(b"x")
        raise RuntimeError("merge failed")
    assert not (out / ".clusterclip" / "build").exists()
    with pytest.raises(RuntimeError), OutputDir(out, job) as run:  # a resumable step keeps it
        raise RuntimeError("embed failed")
    assert (out / ".clusterclip" / "build" / "job.json").exists()


# --------------------------------------------------------------------------- manifests
@pytest.mark.parametrize("manifest, needle", [
    ({"tool": "clusterclip"}, "step None"),
    ({"tool": "clusterclip", "step": "embed"}, "manifest_version None"),
    ({"tool": "clusterclip", "step": "embed", "manifest_version": 2}, "settings, inputs, outputs, statistics"),
    ({"tool": "clusterclip", "step": "embed", "manifest_version": 2, "settings": {}, "inputs": {}, "outputs": [],
      "statistics": {}, "checksum": "0"}, "checksum does not match"),
])
def test_an_incomplete_manifest_is_refused_in_one_line(tmp_path, manifest, needle):
    from helpers import invoke

    d = tmp_path / "d"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ClusterClipError) as e:
        check_manifest(manifest, d / "manifest.json")
    assert needle in str(e.value) and "\n" not in str(e.value)
    code, output = invoke(["verify", d])
    assert code != 0 and needle in output and "clusterclip None" not in output and "Traceback" not in output, output


def test_the_manifest_digest_ignores_layout_only(tmp_path):
    out = tmp_path / "out"
    run_step(out, "a")
    digest = manifest_digest(out)
    m = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(m))  # another layout, the same content
    assert manifest_digest(out) == digest
    m["statistics"]["x"] = 1
    (out / "manifest.json").write_text(json.dumps(m))
    assert manifest_digest(out) != digest


def test_reading_a_file_the_manifest_does_not_list_is_refused(tmp_path):
    from clusterclip.embed import EmbedDir

    from embed_fixtures import write_embed_dir

    d = write_embed_dir(tmp_path / "emb", [[1.0, 0.0], [0.0, 1.0]])
    (d / "extra.npy").write_bytes(b"x")
    with pytest.raises(IntegrityError, match="extra.npy: not recorded"):
        EmbedDir(d).verify_file("extra.npy")


# --------------------------------------------------------------------------- config files
@pytest.mark.parametrize("text, suffix, needle", [
    ("k: 4\nseed: 1\nk: 5\n", ".yaml", "key 'k' given twice (lines 1 and 3)"),
    ("cluster:\n  k: 4\n  k: 5\n", ".yml", "key 'k' given twice (lines 2 and 3)"),
    ("{k: 4, k: 5}\n", ".yaml", "key 'k' given twice"),
    ("max-length: 4\nmax_length: 5\n", ".yaml", "'max-length' and 'max_length' name the same option"),
    ('[embed]\nmax-length = 4\nmax_length = 5\n', ".toml", "[embed] 'max-length' and 'max_length'"),
])
def test_a_config_key_given_twice_is_refused(tmp_path, text, suffix, needle):
    from clusterclip.cli.common import load_config

    p = tmp_path / f"c{suffix}"
    p.write_text(text)
    section = "embed" if "embed" in text else "cluster"
    with pytest.raises(ClusterClipError) as e:
        load_config(p, section)
    assert needle in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_a_yaml_merge_key_may_be_overridden(tmp_path):
    from clusterclip.cli.common import load_config

    p = tmp_path / "c.yaml"
    p.write_text("base: &b {k: 4, seed: 1}\ncluster:\n  <<: *b\n  k: 5\n")
    assert load_config(p, "cluster")["k"] == 5
