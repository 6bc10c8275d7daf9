"""Upgrades (issue 25.5): outputs written by an earlier clusterclip, which wrote no
``.clusterclip/committed.json``, are replaced by ``--overwrite`` or adopted by ``clusterclip verify
--adopt`` (every file checked first), so a pipeline of reruns survives an upgrade.

The fixture ``tests/data/upgrade-0.2.0`` was written by the real code of that version (its
PROVENANCE.md); :func:`earlier_outputs` moves it to a test directory as that version would have
written it there (the recorded paths, and the digests that chain the manifests).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clusterclip.artifacts.files import dumps_json, sha256_bytes
from clusterclip.artifacts.manifest import manifest_digest
from clusterclip.artifacts.output import OWNER_FILE
from clusterclip.cluster import ClusterDir

from helpers import REPO, assert_one_line_error, invoke, run_cli, tree_bytes

FIXTURE = REPO / "tests" / "data" / "upgrade-0.2.0"
RECORDED_AT = "/tmp/lineage/fx"  #: where the fixture was written (PROVENANCE.md)
STEPS = ("emb", "cl", "sched")  #: in the order their manifests chain


def _relocated(value, root: str):
    if isinstance(value, str):
        return root + value[len(RECORDED_AT):] if value.startswith(RECORDED_AT) else value
    if isinstance(value, list):
        return [_relocated(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _relocated(v, root) for k, v in value.items()}
    return value


def earlier_outputs(dest: Path) -> Path:
    """The fixture's corpus and emb, cl, sched under ``dest``, as the earlier version wrote them there."""
    shutil.copytree(FIXTURE, dest, dirs_exist_ok=True)
    root = str(dest.resolve())
    digests: dict[str, str] = {}
    for name in STEPS:
        mp = dest / name / "manifest.json"
        m = _relocated(json.loads(mp.read_text()), root)
        for key in ("embed", "cluster"):
            if key in m["inputs"]:
                m["inputs"][key]["manifest_sha256"] = digests[m["inputs"][key]["path"]]
        body = {k: v for k, v in m.items() if k != "checksum"}
        m["checksum"] = sha256_bytes(dumps_json(body).encode("utf-8"))
        mp.write_text(dumps_json(m))
        digests[str((dest / name).resolve())] = manifest_digest(dest / name)
    for name in STEPS:
        assert (dest / name / ".clusterclip" / "lock").is_file()
        assert not (dest / name / ".clusterclip" / OWNER_FILE).exists()
    return dest


def owned(d: Path) -> bool:
    owner = d / ".clusterclip" / OWNER_FILE
    return owner.is_file() and json.loads(owner.read_text())["manifest_sha256"] == manifest_digest(d)


def test_the_fixture_is_what_that_version_wrote():
    manifests = {name: json.loads((FIXTURE / name / "manifest.json").read_text()) for name in STEPS}
    assert {m["version"] for m in manifests.values()} == {"0.2.0"}
    assert {m["manifest_version"] for m in manifests.values()} == {2}
    for name, m in manifests.items():  # what each directory holds: the files listed, the manifest, an empty lock
        listed = {r["path"] for r in m["outputs"]}
        assert set(tree_bytes(FIXTURE / name)) == listed | {"manifest.json"}
        assert (FIXTURE / name / ".clusterclip" / "lock").read_bytes() == b""
        assert sorted(p.name for p in (FIXTURE / name / ".clusterclip").iterdir()) == ["lock"]


def test_an_earlier_output_is_refused_naming_both_fixes_and_replaced_by_overwrite(tmp_path):
    root = earlier_outputs(tmp_path / "work")
    emb, cl, sched = (root / n for n in STEPS)
    before = tree_bytes(cl)
    code, out = invoke(["cluster", emb, "--out", cl, "--k", 2])
    assert_one_line_error(code, out, "committed.json", f"verify --adopt {cl.resolve()}", "--overwrite")
    assert tree_bytes(cl) == before and not owned(cl)

    data = bytearray((cl / "assignments.parquet").read_bytes())  # a damaged file: not replaced, even so
    data[len(data) // 2] ^= 1
    (cl / "assignments.parquet").write_bytes(bytes(data))
    code, out = invoke(["cluster", emb, "--out", cl, "--k", 2, "--overwrite"])
    assert_one_line_error(code, out, "assignments.parquet", "sha256", "delete")
    assert not owned(cl)
    (cl / "assignments.parquet").write_bytes(before["assignments.parquet"])

    result = run_cli(["cluster", emb, "--out", cl, "--k", 2, "--overwrite"])
    assert "adopted" in result.output
    assert ClusterDir(cl).k == 2 and owned(cl)
    run_cli(["schedule", emb, cl, "--out", sched, "--dry-run", "--samples", 30, "--overwrite"])
    assert json.loads((sched / "manifest.json").read_text())["statistics"]["samples"] == 30 and owned(sched)
    assert "already done" in run_cli(["schedule", emb, cl, "--out", sched, "--dry-run", "--samples", 30]).output


def test_verify_adopt_checks_every_file_first_then_the_same_commands_are_done(tmp_path):
    root = earlier_outputs(tmp_path / "work")
    emb, cl, sched = (root / n for n in STEPS)
    order = sched / "order.parquet"
    good = order.read_bytes()
    order.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    code, out = invoke(["verify", "--adopt", sched])
    assert code == 3 and "order.parquet" in out and "adopted" not in out, out
    assert not owned(sched)
    order.write_bytes(good)
    (root / "corpus.jsonl").rename(root / "moved.jsonl")  # the embed directory's corpus is checked too
    code, out = invoke(["verify", "--adopt", emb])
    assert code == 3 and "corpus.jsonl" in out and not owned(emb), out
    (root / "moved.jsonl").rename(root / "corpus.jsonl")

    result = run_cli(["verify", "--adopt", emb, cl, sched])
    assert result.output.count("; adopted") == 3, result.output
    assert all(owned(d) for d in (emb, cl, sched))
    assert "already clusterclip's own" in run_cli(["verify", "--adopt", cl]).output
    # the commands that wrote them, rerun by this version: nothing to do
    assert "already done" in run_cli(["cluster", emb, "--out", cl, "--k", 3]).output
    assert "already done" in run_cli(["schedule", emb, cl, "--out", sched, "--dry-run", "--samples", 20]).output
    code, out = invoke(["cluster", emb, "--out", cl, "--k", 2])  # other settings: refused as for any output
    assert_one_line_error(code, out, "k 3 -> 2", "--overwrite")


@pytest.mark.slow
def test_the_earlier_embed_output_is_done_after_adopting_and_replaced_with_overwrite(tmp_path):
    root = earlier_outputs(tmp_path / "work")
    emb, corpus = root / "emb", root / "corpus.jsonl"
    flags = ["--max-length", 32, "--id-column", "id"]
    run_cli(["verify", "--adopt", emb])
    assert "already done" in run_cli(["embed", corpus, "--out", emb, *flags]).output
    result = run_cli(["embed", corpus, "--out", emb, "--max-length", 16, "--id-column", "id", "--overwrite"])
    assert "-> " in result.output and owned(emb)
    assert json.loads((emb / "manifest.json").read_text())["settings"]["max_length"] == 16
