"""Every error of the command line is one line that names the option or file: fuzzed.

Hypothesis throws adversarial values at every option of `cluster`, `schedule`, `inspect` and
`verify` (and at the same options through a config file). Whatever happens, the command either
succeeds or prints exactly one `error:` line, never a traceback and never an internal error.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import invoke

pytestmark = pytest.mark.slow

WEIRD_TEXT = ["", " ", "0", "-1", "1", "4.7", "1e308", "-1e308", "nan", "inf", "-inf", "true", "none", "None",
              "99999999999999999999999", "0x10", "1_000", "∞", "\u00a0", "a" * 300, "../../etc/passwd", "/dev/null",
              "bin,,parquet", "bin,nope", ",", "<|endoftext|>", "\ud800", "\x00", "--k", "-", "clusterclip",
              "1e23", "100000000000000000000000", "3=99999999999999999999", "1=2,1=3", "0=1", "4=0", "=", "1=",
              "/dev/zero", ".", "tokens", "samples"]
CLUSTER_OPTIONS = ["--k", "--iters", "--seed", "--max-train-points", "--device", "--init", "--levels", "--k2",
                   "--chunk-rows", "--threads"]
SCHEDULE_OPTIONS = ["--sampler", "--max-repeats", "--alpha", "--epochs", "--samples", "--tokens", "--seed",
                    "--eos-token", "--bos-token", "--convention", "--align-tokens", "--pack", "--format",
                    "--shard-tokens", "--tokenizer", "--balance", "--weights", "--cluster-max-repeats",
                    "--budget-tokens", "--doc-weight-column", "--doc-weight-power", "--dedup-threshold"]


def one_line_or_success(code: int, output: str) -> None:
    assert "Traceback" not in output, output
    assert "unexpected internal error" not in output, output
    if code != 0:
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, output


values = st.one_of(st.sampled_from(WEIRD_TEXT), st.integers(-2**70, 2**70).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=20))
counter = itertools.count()


EMBED_OPTIONS = ["--text-column", "--id-column", "--limit", "--encoder", "--model", "--max-length", "--long-docs",
                 "--prompt-name", "--device", "--dtype", "--batch-size", "--batch-tokens", "--packing", "--save-dtype",
                 "--part-docs", "--window-docs", "--num-partitions", "--partition-index", "--partition-block"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(EMBED_OPTIONS), value=values)
def test_embed_options(tmp_path_factory, option, value):
    base = tmp_path_factory.getbasetemp()
    corpus = base / "fuzz-corpus.jsonl"
    if not corpus.exists():
        corpus.write_text('{"text": "one small document", "id": 1}\n{"text": "and another one", "id": 2}\n')
    args = ["embed", corpus, "--out", base / f"fuzz-e-{next(counter)}", "--max-length", 8, option, value]
    one_line_or_success(*invoke(args))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(CLUSTER_OPTIONS), value=values)
def test_cluster_options(tmp_path_factory, embedded, option, value):
    out = tmp_path_factory.getbasetemp() / f"fuzz-cl-{next(counter)}"
    args = ["cluster", embedded, "--out", out, "--k", 3, option, value]
    one_line_or_success(*invoke(args))


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a numpy warning on stderr is a defect too
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(SCHEDULE_OPTIONS), value=values)
def test_schedule_options(tmp_path_factory, embedded, clustered, demo_tokenizer, option, value):
    out = tmp_path_factory.getbasetemp() / f"fuzz-s-{next(counter)}"
    args = ["schedule", embedded, clustered, "--out", out, "--tokenizer", demo_tokenizer, "--shard-tokens", 5000,
            option, value]
    one_line_or_success(*invoke(args))


cells = st.one_of(st.sampled_from(WEIRD_TEXT[:20] + ["", "1e15", "1e-300", "5e-324"]), st.integers(-2**70, 2**70).map(str),
                  st.floats(allow_nan=True, allow_infinity=True).map(repr))


@pytest.mark.filterwarnings("error::RuntimeWarning")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(weights=st.lists(cells, min_size=1, max_size=5), repeats=st.lists(cells, min_size=5, max_size=5),
       extra=st.sampled_from([[], ["--balance", "tokens"], ["--budget-tokens", "5000"], ["--alpha", "16"],
                              ["--alpha", "-16", "--balance", "tokens"]]))
def test_schedule_weights_files(tmp_path_factory, embedded, clustered, demo_tokenizer, weights, repeats, extra):
    n = next(counter)
    path = tmp_path_factory.getbasetemp() / f"fuzz-w-{n}.csv"
    rows = [f"{k},{w.replace(',', ';')},{r.replace(',', ';')}" for k, (w, r) in enumerate(zip(weights, repeats))]
    path.write_text("cluster,weight,max_repeats\n" + "\n".join(rows) + "\n", "utf-8", errors="surrogatepass")
    args = ["schedule", embedded, clustered, "--out", tmp_path_factory.getbasetemp() / f"fuzz-sw-{n}",
            "--tokenizer", demo_tokenizer, "--dry-run", "--weights", path, *extra]
    one_line_or_success(*invoke(args))


toml_values = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=False), st.booleans(),
                        st.text(max_size=10), st.lists(st.sampled_from(["bin", "parquet", "x", ""]), max_size=3))


def toml_literal(v) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if v == v and v not in (float("inf"), float("-inf")) else "1.5"
    return json.dumps(v)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(step=st.sampled_from(["embed", "cluster", "schedule"]),
       name=st.sampled_from(EMBED_OPTIONS + CLUSTER_OPTIONS + SCHEDULE_OPTIONS),
       value=toml_values)
def test_config_values(tmp_path_factory, small_corpus, embedded, clustered, demo_tokenizer, step, name, value):
    n = next(counter)
    config = tmp_path_factory.getbasetemp() / f"fuzz-{n}.toml"
    config.write_text(f"[{step}]\n{name.lstrip('-')} = {toml_literal(value)}\n", "utf-8")
    out = tmp_path_factory.getbasetemp() / f"fuzz-c-{n}"
    if step == "embed":
        args = ["embed", small_corpus, "--out", out, "--max-length", 8, "--limit", 3, "--config", config]
    elif step == "cluster":
        args = ["cluster", embedded, "--out", out, "--k", 3, "--config", config]
    else:
        args = ["schedule", embedded, clustered, "--out", out, "--tokenizer", demo_tokenizer, "--config", config]
    one_line_or_success(*invoke(args))


@pytest.mark.parametrize("target", ["nothing-here", "a-file", "an-embed-dir"])
def test_inspect_and_verify_on_the_wrong_thing(tmp_path, embedded, target):
    path = {"nothing-here": tmp_path / "nope", "a-file": tmp_path / "f.txt", "an-embed-dir": embedded}[target]
    if target == "a-file":
        path.write_text("x")
    code, output = invoke(["inspect", path, "--sample", 0])
    one_line_or_success(code, output)
    assert code != 0
    if target == "an-embed-dir":
        assert "is a `clusterclip embed` directory" in output
    code, output = invoke(["verify", path])
    assert (code == 0) == (target == "an-embed-dir"), output
    assert "Traceback" not in output
