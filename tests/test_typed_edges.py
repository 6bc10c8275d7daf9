"""Every edge a user can type into ``schedule`` (issue 25 item 4): huge numbers, NaN, duplicates, options
that need another option, directories and devices where a file is due.

Whatever is typed, the settings or the parsers refuse it in one line before anything is read or
written, or the run plans without a numpy warning: properties over typed values at the rules'
boundaries (flags, ``--cluster-max-repeats`` items, ``--weights`` files in every format), and the
cases the issue lists as examples.
"""

from __future__ import annotations

import json
import os
import re
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterclip.errors import InputError, MismatchError
from clusterclip.schedule import ScheduleSettings, schedule_corpus
from clusterclip.schedule.mixing import (
    MAX_WEIGHT,
    cluster_repeats_items,
    parse_cluster_repeats,
    read_cluster_table,
    semantic_duplicates,
)
from clusterclip.schedule.settings import MAX_REPEATS_LIMIT, MAX_TOKEN_BUDGET, MixturesSettings

from helpers import invoke

#: whole numbers around every bound a rule has (int64, float64's exact range, the clip limit)
BIG_INTS = st.one_of(st.integers(-3, 3), st.integers(-2**80, 2**80),
                     st.sampled_from([2**20, 2**20 + 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**15,
                                      10**15 + 1, 10**23, 99999999999999999999]))
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), BIG_INTS,
                    st.sampled_from([1e308, -1e308, 5e-324, 1e-308, 1e15, 1e16, -0.0, 0.0]))


def typed(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def planned_without_warnings(emb, cl, out, **options):
    """``schedule --dry-run`` with every warning an error: the result, or the InputError it refused with."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return schedule_corpus(emb, cl, out, overwrite=True, progress=False, dry_run=True, **options)
        except (InputError, MismatchError) as e:
            assert "\n" not in str(e)
            return e


# ----------------------------------------------------------------------------- --cluster-max-repeats


@settings(max_examples=300, deadline=None)
@given(items=st.lists(st.tuples(BIG_INTS, BIG_INTS), min_size=1, max_size=4), spaces=st.booleans())
def test_cluster_max_repeats_is_accepted_exactly_when_every_item_is_in_range(items, spaces):
    text = (", " if spaces else ",").join(f"{k}={r}" for k, r in items)
    ids = [k for k, _ in items]
    valid = (all(k >= 0 and 1 <= r <= MAX_REPEATS_LIMIT for k, r in items) and len(set(ids)) == len(ids))
    try:
        got = cluster_repeats_items(text)
        ScheduleSettings(dry_run=True, cluster_max_repeats=text)  # the settings apply the same rule
    except InputError as e:
        assert not valid, e
        assert str(e).startswith("--cluster-max-repeats") and "\n" not in str(e)
        with pytest.raises(InputError):
            ScheduleSettings(dry_run=True, cluster_max_repeats=text)
        return
    assert valid and got == dict(items)
    repeats = parse_cluster_repeats(text, max(ids) + 1) if max(ids) < 10**6 else None
    if repeats is not None:
        assert repeats.dtype == np.int64 and [repeats[k] for k in ids] == [r for _, r in items]


@pytest.mark.parametrize("text, needle", [
    ("3=99999999999999999999", "repeats must be between 1 and 1,048,576"),
    ("3=2,3=4", "cluster 3 is listed twice"),
    ("3", "write CLUSTER=REPEATS"),
    ("-1=2", "cluster ids are 0 or more"),
    (",", "names no cluster"),
])
def test_cluster_max_repeats_refusals_name_the_item(text, needle):
    with pytest.raises(InputError, match=needle):
        ScheduleSettings(dry_run=True, cluster_max_repeats=text)


# ----------------------------------------------------------------------------- numbers of every flag


def _number_rules():
    for cls in (ScheduleSettings, MixturesSettings):
        for name, rule in cls.rules().items():
            if rule.kind in (int, float) and rule.cli:
                yield cls, name, rule


@settings(max_examples=400, deadline=None)
@given(data=st.data(), value=NUMBERS)
def test_every_number_flag_parses_to_its_range_or_refuses_in_one_line(data, value):
    cls, name, rule = data.draw(st.sampled_from(list(_number_rules())))
    try:
        parsed = rule.parse(typed(value))
    except InputError as e:
        assert str(e).startswith(rule.flag) and "\n" not in str(e)
        return
    assert isinstance(parsed, rule.kind) and (rule.kind is not float or np.isfinite(parsed))
    assert rule.min is None or parsed >= rule.min
    assert rule.max is not None or name == "samples", f"{rule.flag} has no upper bound"  # samples: bounded by memory
    assert rule.max is None or parsed <= rule.max


def test_token_budgets_beyond_any_corpus_are_refused_in_one_line(tmp_path, embedded, clustered, demo_tokenizer):
    for args in (["--budget-tokens", "1e23"], ["--budget-tokens", 10**23], ["--tokens", 10**23],
                 ["--cluster-max-repeats", "3=99999999999999999999"]):
        code, output = invoke(["schedule", embedded, clustered, "--out", tmp_path / "s", "--tokenizer",
                               demo_tokenizer, "--dry-run", *args])
        assert code not in (0, 70) and "internal error" not in output, output
        assert [line for line in output.splitlines() if line.startswith("error:")] == [output.strip()], output
    assert MAX_TOKEN_BUDGET == 10**15 and not (tmp_path / "s").exists()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budget=st.one_of(st.integers(1, 10**25), st.sampled_from([1, MAX_TOKEN_BUDGET, MAX_TOKEN_BUDGET + 1, 10**23])),
       alpha=st.sampled_from([-16.0, -1.0, 0.0, 1.0, 16.0]), top=st.sampled_from([1.0, 1e6, MAX_WEIGHT, 1e200, 1e308]),
       balance=st.sampled_from(["samples", "tokens"]))
def test_every_token_budget_and_weight_plans_without_warnings_or_is_refused(tmp_path_factory, embedded, clustered,
                                                                            demo_tokenizer, budget, alpha, top,
                                                                            balance):
    work = tmp_path_factory.mktemp("budget")
    (work / "w.csv").write_text(f"cluster,weight\n0,{top!r}\n1,{top!r}\n2,1e-300\n")
    result = planned_without_warnings(embedded, clustered, work / "s", tokenizer=str(demo_tokenizer),
                                      budget_tokens=budget, alpha=alpha, balance=balance, weights=str(work / "w.csv"),
                                      allow_partial=True)
    if isinstance(result, Exception):
        assert budget > MAX_TOKEN_BUDGET or top > MAX_WEIGHT, result
    else:
        assert result.statistics["samples"] >= 1


# ----------------------------------------------------------------------------- --weights files


CELL = st.one_of(NUMBERS, st.sampled_from(["nan", "NaN", "NA", "null", "", "inf", "1e308", " 2", "x", None]))


def _write_table(path, fmt: str, columns: dict):
    if fmt == "csv":
        lines = [",".join(columns)] + [",".join("" if v is None else typed(v) for v in row)
                                       for row in zip(*columns.values())]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "json":
        path.write_text(json.dumps([dict(zip(columns, row)) for row in zip(*columns.values())]))
    else:
        cols = {}
        for name, values in columns.items():
            clean = [v if isinstance(v, float) else float(v) if isinstance(v, int) and abs(v) < 2**63 else None
                     for v in values]
            cols[name] = pa.array(clean, pa.float64())
        pq.write_table(pa.table(cols), path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["csv", "json", "parquet"]), weights=st.lists(CELL, min_size=1, max_size=3),
       repeats=st.one_of(st.none(), st.lists(CELL, min_size=3, max_size=3)))
def test_a_weights_file_is_read_to_bounded_values_or_refused_in_one_line(tmp_path_factory, fmt, weights, repeats):
    path = tmp_path_factory.mktemp("w") / f"w.{fmt}"
    columns = {"cluster": list(range(len(weights))), "weight": weights}
    if repeats is not None:
        columns["max_repeats"] = repeats[: len(weights)]
    _write_table(path, fmt, columns)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            w, r = read_cluster_table(path, 4)
    except (InputError, MismatchError) as e:
        assert str(e).startswith(f"--weights {path}") and "\n" not in str(e)
        return
    assert np.all(np.isfinite(w)) and np.all((w >= 0) & (w <= MAX_WEIGHT)) and np.any(w > 0)
    assert r.dtype == np.int64 and np.all((r >= 0) & (r <= MAX_REPEATS_LIMIT))
    written = columns["weight"] + columns.get("max_repeats", [])
    if fmt == "parquet":  # text cells are written as nulls there
        written = [c for c in written if not isinstance(c, str)]
    for cell in written:  # NaN, "nan", "NA" and the like are never read as "no weight" or "no clip"
        assert not (isinstance(cell, float) and cell != cell) and cell not in ("nan", "NaN", "NA", "null")


@pytest.mark.parametrize("content, needle", [
    ("cluster,weight,max_repeats\n0,1,nan\n", "row 0: max_repeats nan must be a whole number"),
    ("cluster,weight,max_repeats\n0,1,\n1,1,NA\n", "row 1: max_repeats 'NA' must be a whole number"),
    ("cluster,weight\n0,nan\n", "row 0: weight nan must be a finite number"),
    ("cluster,weight\n0,1e308\n", "weight 1e+308 must be at most 1e+15"),
    ("cluster,weight,max_repeats\n0,1,\n1,1,1e30\n", "row 1: max_repeats 1e+30 must be at most 1,048,576"),
])
def test_weights_file_edges_are_refused_like_a_nan_weight(tmp_path, content, needle):
    (tmp_path / "w.csv").write_text(content)
    with pytest.raises(InputError, match=re.escape(needle)):
        read_cluster_table(tmp_path / "w.csv", 2)


def test_a_directory_or_a_device_as_weights_says_so(tmp_path):
    (tmp_path / "w.csv").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        read_cluster_table(tmp_path / "w.csv", 2)
    if os.path.exists("/dev/null"):
        with pytest.raises(InputError, match="not a regular file"):
            read_cluster_table("/dev/null", 2)
    with pytest.raises(InputError, match="no such file"):
        read_cluster_table(tmp_path / "nope.csv", 2)


# ----------------------------------------------------------------------------- options that need another


def test_doc_weight_power_without_a_doc_weight_column_is_refused():
    with pytest.raises(InputError, match="--doc-weight-power 2: .*--doc-weight-column"):
        ScheduleSettings(dry_run=True, doc_weight_power=2.0)
    ScheduleSettings(dry_run=True, doc_weight_power=2.0, doc_weight_column="score")
    ScheduleSettings(dry_run=True)


# ----------------------------------------------------------------------------- --dedup-threshold 1


class _Store:
    def __init__(self, e):
        self.e = e

    def take(self, rows):
        return self.e[np.asarray(rows)]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 40), dim=st.sampled_from([3, 16, 384]), copies=st.integers(1, 4), seed=st.integers(0, 2**32),
       dtype=st.sampled_from([np.float16, np.float32]))
def test_dedup_threshold_one_removes_nothing_even_exact_duplicates(n, dim, copies, seed, dtype):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, dim))
    e = np.repeat(e / np.linalg.norm(e, axis=1, keepdims=True), copies, axis=0).astype(dtype)
    labels = rng.integers(0, 2, len(e))
    centroids = np.stack([e[labels == k].astype(np.float32).mean(0) if np.any(labels == k) else np.ones(dim)
                          for k in (0, 1)])
    keep = semantic_duplicates(_Store(e.astype(np.float32)), labels, centroids, 1.0, chunk_elements=64)
    assert keep.all()
