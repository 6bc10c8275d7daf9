"""``clusterclip mixtures`` is one artifact (issue 25.3): a manifest with the digest of ``weights.parquet``, of every
weights CSV and of every mixture's schedule files; ``verify`` checks them; a rerun with another ``--n`` (and
``--overwrite``) leaves exactly the new mixtures, no stale ``mixture-NNN`` directory or CSV; a killed run resumes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterclip.errors import MismatchError
from clusterclip.schedule.mixtures import write_mixtures
from clusterclip.schedule.mixtures_dir import MixturesDir, mixture_name, weights_name
from clusterclip.verify import verify_directory

from helpers import assert_one_line_error, invoke, run_cli, run_process, tree_bytes

_runs = itertools.count()


def listed(out: Path) -> set[str]:
    return {r["path"] for r in json.loads((out / "manifest.json").read_text())["outputs"]}


def files_under(out: Path) -> set[str]:
    """Every file below ``out`` but clusterclip's private ``.clusterclip/`` and the manifest."""
    rels = (p.relative_to(out) for p in out.rglob("*") if p.is_file())
    return {r.as_posix() for r in rels if ".clusterclip" not in r.parts and r.as_posix() != "manifest.json"}


def assert_exactly(out: Path, n: int) -> None:
    """``out`` holds the mixtures 0..n-1, every file listed with its digest, nothing else; verify finds nothing."""
    mix = MixturesDir(out)
    assert mix.n == n
    assert sorted(p.name for p in out.glob("mixture-*")) == [mixture_name(i) for i in range(n)]
    assert sorted(p.name for p in (out / "weights").iterdir()) == [Path(weights_name(i)).name for i in range(n)]
    assert files_under(out) == listed(out)
    manifest, problems = verify_directory(out)
    assert problems == [] and manifest is not None and manifest["step"] == "mixtures"
    for i in range(n):  # each schedule drew with the weights file beside it, recorded at its final path
        child = json.loads((mix.schedule_dir(i) / "manifest.json").read_text())["settings"]
        assert Path(child["weights"]) == (out / weights_name(i)).resolve()


RUNS = st.lists(st.tuples(st.integers(1, 4), st.booleans(), st.integers(0, 1)), min_size=1, max_size=3)
FIXTURES = [HealthCheck.function_scoped_fixture]


@settings(max_examples=6, deadline=None, suppress_health_check=FIXTURES)
@given(runs=RUNS)
def test_any_sequence_of_reruns_leaves_exactly_the_last_mixtures(tmp_path, embedded, clustered, runs):
    check_reruns(tmp_path, embedded, clustered, runs)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(runs=RUNS)
def test_any_sequence_of_reruns_leaves_exactly_the_last_mixtures_many(tmp_path, embedded, clustered, runs):
    check_reruns(tmp_path, embedded, clustered, runs)


def check_reruns(tmp_path, embedded, clustered, runs) -> None:
    """Reruns over any n, with or without --overwrite, another seed or the same job: the output is always exactly the
    finished job's files (a refused rerun changes no byte)."""
    out = tmp_path / f"mix{next(_runs)}"
    current = None
    for n, overwrite, seed in runs:
        before = tree_bytes(out) if out.exists() else None
        try:
            result = write_mixtures(embedded, clustered, out, concentration=0.5, n=n, seed=seed, samples=20,
                                    overwrite=overwrite)
        except MismatchError as e:
            assert current is not None and current != (n, seed) and not overwrite
            assert "--overwrite" in str(e) and tree_bytes(out) == before
            continue
        assert result.state == ("done" if current == (n, seed) else "fresh")
        current = (n, seed)
        assert_exactly(out, n)


def test_verify_finds_a_changed_weights_file_order_or_schedule_manifest(tmp_path, embedded, clustered):
    out = tmp_path / "mix"
    write_mixtures(embedded, clustered, out, concentration=1.0, n=2, samples=20)
    for rel in (weights_name(1), f"{mixture_name(0)}/order.parquet", f"{mixture_name(1)}/manifest.json"):
        path = out / rel
        data = path.read_bytes()
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        _, problems = verify_directory(out)
        assert problems and str(path) in problems[0]
        path.write_bytes(data)
    assert verify_directory(out)[1] == []
    (out / "weights.parquet").unlink()  # damaged: the rerun rebuilds it
    assert write_mixtures(embedded, clustered, out, concentration=1.0, n=2, samples=20).state == "fresh"
    assert_exactly(out, 2)


def test_a_mixture_schedule_is_a_part_not_an_output_of_its_own(tmp_path, embedded, clustered):
    out = tmp_path / "mix"
    run_cli(["mixtures", embedded, clustered, "--out", out, "--n", 2, "--samples", 20])
    before = tree_bytes(out)
    for args in (["schedule", embedded, clustered, "--out", out / mixture_name(0), "--dry-run", "--samples", 10],
                 ["schedule", embedded, clustered, "--out", out / mixture_name(0), "--dry-run", "--samples", 10,
                  "--overwrite"],
                 ["verify", "--adopt", out / mixture_name(0)]):
        code, output = invoke(args)
        assert_one_line_error(code, output, "is a part of the `clusterclip mixtures` output")
    assert tree_bytes(out) == before
    assert "ok (schedule" in run_cli(["verify", out / mixture_name(0)]).output
    assert "ok (mixtures" in run_cli(["verify", out]).output


def test_a_mixtures_folder_of_an_earlier_clusterclip_is_refused_in_one_line(tmp_path, embedded, clustered):
    out = tmp_path / "mix"
    (out / "weights").mkdir(parents=True)
    (out / "weights.parquet").write_bytes(b"PAR1")
    code, output = invoke(["mixtures", embedded, clustered, "--out", out, "--n", 2, "--samples", 20, "--overwrite"])
    assert_one_line_error(code, output, "earlier clusterclip", "delete it")
    assert sorted(p.name for p in out.iterdir()) == ["weights", "weights.parquet"]


@pytest.mark.slow
def test_a_killed_mixtures_run_resumes_to_the_same_bytes(tmp_path, embedded, clustered):
    args = ["mixtures", embedded, clustered, "--n", 4, "--samples", 30, "--dirichlet", 0.3]
    killed = run_process(*args, "--out", tmp_path / "mix", check=False, env={"CLUSTERCLIP_FAULT": "schedule.order:3"})
    assert killed.returncode != 0 and not (tmp_path / "mix" / "manifest.json").exists()
    assert not (tmp_path / "mix" / mixture_name(0)).exists()  # nothing is in place before the commit
    resumed = run_process(*args, "--out", tmp_path / "mix")
    assert "4 schedules" in resumed.stdout
    run_process(*args, "--out", tmp_path / "clean")
    resumed_files, clean_files = tree_bytes(tmp_path / "mix"), tree_bytes(tmp_path / "clean")
    assert resumed_files.keys() == clean_files.keys()
    # the same bytes but for the manifests, which name each output's own path (the weights files' final paths)
    assert all(resumed_files[k] == clean_files[k] for k in clean_files if not k.endswith("manifest.json"))
    assert_exactly(tmp_path / "mix", 4)
