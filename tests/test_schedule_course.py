"""``schedule`` changing course through the CLI (issue 28 items 1-3; the law as data, issue 23 item 3):
``--stages`` / ``[[schedule.stage]]``, ``--min-repeat-gap``, ``--continue OLD --at-sample|--at-tokens``, the
``stage`` column of ``order.parquet`` and ``law.parquet``. The sampler's own properties (the clip across
stages, the gap against a one-step reference, any prefix point) are in tests/test_stages.py."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clusterclip.schedule.law import LAW_COLUMNS

from helpers import assert_one_line_error, run_cli

STAGES = """
[[stage]]
until = 0.25
sampler = "uniform"
alpha = 1.0

[[stage]]
until_sample = 75

[[stage]]
max_repeats = 3
"""


def _order(d):
    return pq.read_table(d / "order.parquet").to_pydict()


def _manifest(d):
    return json.loads((d / "manifest.json").read_text())


def _shards(d, fmt="bin") -> dict[str, bytes]:
    index = json.loads((d / "shards.json").read_text())
    return {f["path"]: (d / f["path"]).read_bytes() for s in index["shards"][fmt] for f in s["files"]}


def test_stages_file_writes_the_stage_column_the_law_and_per_stage_statistics(tmp_path, embedded, clustered):
    stages = tmp_path / "stages.toml"
    stages.write_text(STAGES)
    out = tmp_path / "sched"
    result = run_cli(["schedule", embedded, clustered, "--out", out, "--dry-run", "--samples", 100,
                      "--stages", stages])
    order = _order(out)
    stage = np.asarray(order["stage"])
    assert list(np.bincount(stage)) == [25, 50, 25]  # 0.25 of 100, then to sample 75, then to the end
    assert np.all(np.diff(stage) >= 0)
    uses = np.bincount(order["doc_id"])
    assert uses.max() <= 4  # the clip is global
    law = pq.read_table(out / "law.parquet").to_pydict()
    assert tuple(law) == LAW_COLUMNS
    k = _manifest(clustered)["statistics"]["k"]
    assert sorted(set(law["stage"])) == [0, 1, 2] and len(law["stage"]) == 3 * k
    assert [c for s, c in zip(law["stage"], law["clip"]) if s == 2] == [3] * k
    assert [c for s, c in zip(law["stage"], law["clip"]) if s == 0] == [0] * k  # uniform: no clip
    for s in range(3):
        assert sum(v for st, v in zip(law["stage"], law["expected_sample_share"]) if st == s) == pytest.approx(1)
    manifest = _manifest(out)
    assert "law.parquet" in {r["path"] for r in manifest["outputs"]}  # its sha256 with every output's
    assert [(x["start"], x["stop"]) for x in manifest["statistics"]["stages"]] == [(0, 25), (25, 75), (75, 100)]
    assert [s["sampler"] for s in manifest["settings"]["stage_laws"]] == ["uniform", "clusterclip", "clusterclip"]
    assert "stage 2: samples 75..100" in result.output


def test_stage_tables_in_the_config_file_plan_the_same_order(tmp_path, embedded, clustered):
    stages = tmp_path / "stages.toml"
    stages.write_text(STAGES)
    config = tmp_path / "config.toml"
    config.write_text("[schedule]\nsamples = 100\n" + STAGES.replace("[[stage]]", "[[schedule.stage]]"))
    run_cli(["schedule", embedded, clustered, "--out", tmp_path / "a", "--dry-run", "--samples", 100,
             "--stages", stages])
    run_cli(["schedule", embedded, clustered, "--out", tmp_path / "b", "--dry-run", "--config", config])
    assert _order(tmp_path / "a") == _order(tmp_path / "b")


def test_one_law_writes_no_stage_column_and_one_stage_of_law(tmp_path, embedded, clustered):
    weights = tmp_path / "w.csv"
    weights.write_text("cluster,weight\n0,3\n1,0\n")
    out = tmp_path / "sched"
    run_cli(["schedule", embedded, clustered, "--out", out, "--dry-run", "--weights", weights])
    assert "stage" not in _order(out)
    law = pq.read_table(out / "law.parquet").to_pydict()
    assert set(law["stage"]) == {0}
    assert law["multiplier"][:2] == [3.0, 0.0] and law["expected_samples"][1] == 0


@pytest.mark.parametrize("text, needle", [
    ("", "no stages"),
    ("[[stage]]\nuntil = 0.5\n[[stage]]\nuntil = 0.5\n", "overlap"),
    ("[[stage]]\nuntil = 0.5\n[[stage]]\nuntil = 0.9\n", "before the end of the budget"),
    ("[[stage]]\nuntil = 1.5\n", "fraction of the budget"),
    ("[[stage]]\nsampler = \"uniform\"\n[[stage]]\nuntil = 0.5\n", "has no end"),
    ("[[stage]]\nuntil = 0.5\nweights = \"missing.csv\"\n[[stage]]\n", "no such file"),
    ("[[stage]]\nuntil = 0.5\nspeed = 3\n[[stage]]\n", "unknown key(s) speed"),
    ("[[stage]]\nuntil = 0.5\nmax_repeats = 0\n[[stage]]\n", "max_repeats"),
    ("[[stage]]\nuntil = 0.5\nsampler = \"random\"\n[[stage]]\n", "random sampler"),
    ("[[stage]]\nuntil_sample = 500\n[[stage]]\n", "past the end of the budget"),
])
def test_bad_stages_are_one_line_errors_and_write_nothing(tmp_path, embedded, clustered, text, needle):
    stages = tmp_path / "stages.toml"
    stages.write_text(text)
    out = tmp_path / "sched"
    result = run_cli(["schedule", embedded, clustered, "--out", out, "--dry-run", "--samples", 200, "--stages",
                      stages], expect_ok=False)
    assert_one_line_error(result.exit_code, result.output, needle)
    assert not out.exists()


def test_min_repeat_gap_spaces_every_repeat(tmp_path, embedded, clustered):
    out = tmp_path / "sched"
    n_docs = _manifest(embedded)["statistics"]["n_docs"]
    run_cli(["schedule", embedded, clustered, "--out", out, "--dry-run", "--epochs", 3, "--min-repeat-gap", 10])
    doc = np.asarray(_order(out)["doc_id"])
    last: dict[int, int] = {}
    for i, d in enumerate(doc.tolist()):
        assert i - last.get(d, -100) > 10
        last[d] = i
    assert len(doc) == 3 * n_docs


def test_an_impossible_gap_says_how_far_the_budget_reaches(tmp_path, embedded, clustered):
    out = tmp_path / "sched"
    args = ["schedule", embedded, clustered, "--out", out, "--dry-run", "--epochs", 3, "--min-repeat-gap", 48]
    result = run_cli(args, expect_ok=False)
    line = assert_one_line_error(result.exit_code, result.output, "--min-repeat-gap 48 samples", "lower the budget to",
                                 "--allow-partial")
    reached = int(line.split("lower the budget to ")[1].split(" samples")[0].replace(",", ""))
    assert not out.exists()
    run_cli(args + ["--allow-partial"])
    assert len(_order(out)["doc_id"]) == reached == 48  # every document once, then nothing is 48 samples old
    assert _manifest(out)["statistics"]["stalled"] is True


def _old(tmp_path, embedded, clustered, tokenizer, *extra):
    old = tmp_path / "old"
    run_cli(["schedule", embedded, clustered, "--out", old, "--tokenizer", tokenizer, "--epochs", 2,
             "--shard-tokens", 500, "--format", "bin", *extra])
    return old


def test_continue_keeps_the_prefix_rows_and_shard_bytes(tmp_path, embedded, clustered, demo_tokenizer):
    old = _old(tmp_path, embedded, clustered, demo_tokenizer)
    weights = tmp_path / "new.csv"
    weights.write_text("cluster,weight\n0,4\n2,0\n")
    new = tmp_path / "new"
    at = 37
    run_cli(["schedule", embedded, clustered, "--out", new, "--tokenizer", demo_tokenizer, "--epochs", 3,
             "--shard-tokens", 500, "--format", "bin", "--continue", old, "--at-sample", at, "--weights", weights])
    a, b = _order(old), _order(new)
    for column in ("doc_id", "cluster", "repeat"):
        assert a[column][:at] == b[column][:at]
    assert set(b["stage"][:at]) == {0} and set(b["stage"][at:]) == {1}
    assert 2 not in b["cluster"][at:]  # the new weights rule the suffix
    uses = np.bincount(b["doc_id"])
    assert uses.max() <= 4
    index = json.loads((old / "shards.json").read_text())
    old_files, new_files = _shards(old), _shards(new)
    kept = [f["path"] for s in _kept_shards(index, "bin", at) for f in s["files"]]
    assert kept and all(old_files[p] == new_files[p] for p in kept)
    manifest = _manifest(new)
    assert manifest["statistics"]["continued"]["at_sample"] == at
    assert manifest["inputs"]["continue"]["manifest_sha256"]
    law = pq.read_table(new / "law.parquet").to_pydict()
    assert set(law["stage"]) == {1}  # the stage planned here; the prefix's is OLD's law.parquet


def test_continue_at_tokens_cuts_at_the_sample_that_reaches_them(tmp_path, embedded, clustered, demo_tokenizer):
    old = _old(tmp_path, embedded, clustered, demo_tokenizer)
    new = tmp_path / "new"
    run_cli(["schedule", embedded, clustered, "--out", new, "--tokenizer", demo_tokenizer, "--epochs", 2,
             "--shard-tokens", 500, "--format", "bin", "--continue", old, "--at-tokens", 1000, "--seed", 5])
    at = _manifest(new)["statistics"]["continued"]["at_sample"]
    stage = np.asarray(_order(new)["stage"])
    assert int((stage == 0).sum()) == at
    assert _order(old)["doc_id"][:at] == _order(new)["doc_id"][:at]


@pytest.mark.parametrize("change, needle", [
    ({"--shard-tokens": 700}, "shard_tokens"),
    ({"--format": "bin,parquet"}, "formats"),
    ({"--at-sample": 100000}, "past the end"),
    ({"--eos-token": "none"}, "eos_id"),
])
def test_continue_refuses_what_differs(tmp_path, embedded, clustered, demo_tokenizer, change, needle):
    old = _old(tmp_path, embedded, clustered, demo_tokenizer)
    args = {"--shard-tokens": 500, "--format": "bin", "--at-sample": 10, **change}
    new = tmp_path / "new"
    result = run_cli(["schedule", embedded, clustered, "--out", new, "--tokenizer", demo_tokenizer, "--epochs", 2,
                      "--continue", old, *[str(x) for kv in args.items() for x in kv]], expect_ok=False)
    assert_one_line_error(result.exit_code, result.output, needle)
    assert not new.exists()


def test_continue_refuses_other_clusters(tmp_path, embedded, clustered, demo_tokenizer):
    old = _old(tmp_path, embedded, clustered, demo_tokenizer)
    other = tmp_path / "cl3"
    run_cli(["cluster", embedded, "--out", other, "--k", 3, "--seed", 0])
    result = run_cli(["schedule", embedded, other, "--out", tmp_path / "new", "--tokenizer", demo_tokenizer,
                      "--shard-tokens", 500, "--continue", old, "--at-sample", 5], expect_ok=False)
    assert_one_line_error(result.exit_code, result.output, "other cluster output")


def test_report_draws_the_law_of_law_parquet_after_the_weights_file_is_gone(tmp_path, embedded, clustered):
    weights = tmp_path / "w.csv"
    weights.write_text("cluster,weight\n0,3\n1,0\n")
    sched = tmp_path / "sched"
    run_cli(["schedule", embedded, clustered, "--out", sched, "--dry-run", "--samples", 60, "--weights", weights])
    weights.unlink()  # the schedule's law is its own data now (issue 23.3)
    out = tmp_path / "report"
    run_cli(["report", embedded, clustered, sched, "--out", out])
    shares = json.loads((out / "report.json").read_text())["figures"]["sizes_and_shares"]["shares"]
    law = pq.read_table(sched / "law.parquet").to_pydict()
    assert "law" in shares
    order = list(json.loads((out / "report.json").read_text())["figures"]["sizes_and_shares"]["cluster_order"])
    expected = dict(zip(law["cluster"], law["expected_sample_share"]))
    assert [pytest.approx(expected[c]) for c in order] == shares["law"]


def _kept_shards(index: dict, fmt: str, at: int) -> list[dict]:
    """The shards closed before sample ``at``: every token of theirs (look-ahead token included) is of a
    sample before it, and so is the sample that closed them (a shard cut by whole samples ends where the
    next sample would not fit: the one that ends right at ``at`` depends on the first sample continued)."""
    return [s for s in index["shards"][fmt] if s["stop"] < at]


SHARD_LAYOUTS = {"bin": ["--format", "bin"], "bin aligned": ["--format", "bin", "--align-tokens", 64],
                 "parquet packed": ["--format", "parquet", "--pack", 48], "megatron": ["--format", "megatron"],
                 # a stream smaller than two shards: modded-nanogpt's loader needs two files, so OLD's shard size was
                 # lowered to cut its stream in two (the continued schedule keeps OLD's, whatever its own stream)
                 "modded-nanogpt small": ["--format", "bin", "--convention", "modded-nanogpt", "--shard-tokens", 10**7]}


@pytest.fixture(scope="module")
def old_schedules(tmp_path_factory, embedded, clustered, demo_tokenizer):
    root = tmp_path_factory.mktemp("old")
    out = {}
    for name, flags in SHARD_LAYOUTS.items():
        out[name] = root / name.replace(" ", "-")
        run_cli(["schedule", embedded, clustered, "--out", out[name], "--tokenizer", demo_tokenizer, "--epochs", 2,
                 "--shard-tokens", 300, *flags])
    return out


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(layout=st.sampled_from(sorted(SHARD_LAYOUTS)), at=st.integers(0, 96), seed=st.integers(0, 3),
       weights=st.lists(st.sampled_from([0.0, 0.5, 1.0, 3.0]), min_size=5, max_size=5),
       new=st.sampled_from([[], ["--sampler", "uniform"], ["--min-repeat-gap", 5], ["--max-repeats", 3]]))
@example(layout="bin", at=92, seed=0, weights=[0.0] * 5, new=["--max-repeats", 3])  # the prefix used a document 4 times
@example(layout="modded-nanogpt small", at=60, seed=1, weights=[1.0, 0.5, 3.0, 1.0, 0.0], new=[])
def test_any_continue_point_keeps_the_prefix_byte_for_byte(tmp_path_factory, embedded, clustered, demo_tokenizer,
                                                           old_schedules, layout, at, seed, weights, new):
    """Any point, any new law: OLD's rows up to it, the shards wholly before it the same bytes, every sample
    before it the same tokens; the clip never exceeded; every planned sample in the order and the shards."""
    from clusterclip.schedule.directory import ScheduleDir

    if not any(weights):
        weights[0] = 1.0
    old = old_schedules[layout]
    tmp = tmp_path_factory.mktemp("new")
    table = tmp / "w.csv"
    table.write_text("cluster,weight\n" + "".join(f"{c},{w}\n" for c, w in enumerate(weights)))
    fmt = SHARD_LAYOUTS[layout][1]
    result = run_cli(["schedule", embedded, clustered, "--out", tmp / "new", "--tokenizer", demo_tokenizer,
                      "--epochs", 3, "--shard-tokens", 300, *SHARD_LAYOUTS[layout], "--continue", old,
                      "--at-sample", at, "--weights", table, "--seed", seed, "--allow-partial", *new],
                     expect_ok=False)
    if result.exit_code:  # a law the corpus cannot follow after this prefix: one line, nothing written
        assert_one_line_error(result.exit_code, result.output, "")
        assert not (tmp / "new").exists()
        return
    a, b = _order(old), _order(tmp / "new")
    assert all(a[c][:at] == b[c][:at] for c in ("doc_id", "cluster", "repeat"))
    if "uniform" not in new:  # the clip counts the prefix's uses: no document drawn after it goes past the clip
        drawn_after = np.unique(b["doc_id"][at:])
        assert np.all(np.bincount(b["doc_id"])[drawn_after] <= (3 if "--max-repeats" in new else 4))
    old_index = json.loads((old / "shards.json").read_text())
    new_index = json.loads((tmp / "new" / "shards.json").read_text())
    old_files, new_files = _shards(old, fmt), _shards(tmp / "new", fmt)
    for shard in _kept_shards(old_index, fmt, at):
        assert all(old_files[f["path"]] == new_files[f["path"]] for f in shard["files"])
    assert new_index["n_samples"] == len(b["doc_id"])
    olds, news = ScheduleDir(old), ScheduleDir(tmp / "new")
    for position in range(0, at, 7):
        assert np.array_equal(olds.read_sample(fmt, position), news.read_sample(fmt, position))


@pytest.mark.slow
def test_a_continuation_too_short_for_the_conventions_files_is_refused(tmp_path, embedded, clustered,
                                                                      demo_tokenizer, old_schedules):
    """OLD's modded-nanogpt shard size was lowered to cut its small stream in two; a continuation keeps that size
    (its first shard is OLD's), so a stream too short to make two files of it is refused in one line, no output
    written; one long enough makes at least two."""
    old = old_schedules["modded-nanogpt small"]
    size = json.loads((old / "shards.json").read_text())["shard_tokens"]
    flags = ["--tokenizer", demo_tokenizer, *SHARD_LAYOUTS["modded-nanogpt small"], "--continue", old,
             "--at-sample", 30]
    short = tmp_path / "short"
    result = run_cli(["schedule", embedded, clustered, "--out", short, "--samples", 40, *flags], expect_ok=False)
    assert_one_line_error(result.exit_code, result.output, "--continue", f"cut every {size:,} tokens",
                          "raise the budget")
    assert {p.name for p in short.iterdir()} <= {".clusterclip"}  # no output (only the private build state)
    run_cli(["schedule", embedded, clustered, "--out", tmp_path / "long", "--epochs", 3, *flags])
    index = json.loads((tmp_path / "long" / "shards.json").read_text())
    assert index["shard_tokens"] == size and index["n_shards"] >= 2
