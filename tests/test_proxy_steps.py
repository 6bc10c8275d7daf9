"""The mixture-search loop from the shell (issue 24): holdout -> schedule --exclude -> proxy -> fit -> propose ->
schedule --weights, on a real corpus, and the one-line refusals of bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import assert_one_line_error, invoke, run_cli, write_jsonl

TINY = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 2, "tie_word_embeddings": True}
PROXY_FLAGS = ["--context", 32, "--batch", 4, "--threads", 1, "--workers", 1, "--device", "cpu", "--dtype",
               "float32", "--checkpoint-every", 8]


@pytest.fixture(scope="module")
def loop(tmp_path_factory, embedded, clustered, demo_tokenizer):
    root = tmp_path_factory.mktemp("loop")
    config = root / "tiny.json"
    config.write_text(json.dumps(TINY))
    target = write_jsonl(root / "target.jsonl", [{"text": "def add(a, b):\n    return a + b"},
                                                 {"text": "Return the sum of the numbers."}, {"text": "   "}])
    run_cli(["holdout", embedded, clustered, "--out", root / "eval", "--per-cluster", 2, "--target", target])
    common = ["--tokenizer", demo_tokenizer, "--exclude", root / "eval", "--format", "bin", "--tokens", 6000]
    for sampler in ("random", "clusterclip"):
        run_cli(["schedule", embedded, clustered, "--out", root / sampler, "--sampler", sampler, *common])
    return {"root": root, "emb": embedded, "cl": clustered, "tok": demo_tokenizer, "config": config,
            "common": common}


def test_holdout_lists_documents_per_cluster_and_schedule_never_draws_them(loop, tmp_path):
    from clusterclip.proxy import holdout_corpus
    from clusterclip.proxy.evaldir import EvalDir
    from clusterclip.schedule import ScheduleDir

    ev = EvalDir(loop["root"] / "eval")
    doc_id, cluster = ev.heldout()
    assert len(doc_id) == ev.statistics["heldout_docs"] > 0
    assert ev.target_texts() == ["def add(a, b):\n    return a + b", "Return the sum of the numbers."]
    wider = holdout_corpus(loop["emb"], loop["cl"], tmp_path / "wider", per_cluster=4, progress=False)
    assert np.isin(doc_id, EvalDir(wider.out).heldout()[0]).all()  # a larger --per-cluster: a superset
    for sampler in ("random", "clusterclip"):
        sched = ScheduleDir(loop["root"] / sampler)
        order = np.concatenate([c for c in _order_doc_ids(sched)])
        assert not np.isin(order, doc_id).any()
        assert sched.manifest["inputs"]["exclude"]["manifest_sha256"] == ev.record()["manifest_sha256"]
        assert sched.statistics["excluded_docs"] == len(doc_id)


def _order_doc_ids(sched):
    import pyarrow.parquet as pq

    yield pq.read_table(sched.order_file(), columns=["doc_id"]).column(0).to_numpy()


@pytest.fixture(scope="module")
def runs(loop):
    root = loop["root"]
    result = run_cli(["proxy", root / "random", root / "clusterclip", "--eval", root / "eval", "--out", root / "runs",
                      "--model-config", loop["config"], "--seeds", 2, *PROXY_FLAGS])
    return root / "runs", result.output


def test_proxy_runs_score_and_summarise_with_seeds(loop, runs):
    from clusterclip.proxy.runfiles import RunsDir

    root = loop["root"]
    assert "random" in runs[1] and "±" in runs[1]
    runs = RunsDir(root / "runs")
    table = runs.runs()
    assert list(table["run"]) == ["random-s0", "random-s1", "clusterclip-s0", "clusterclip-s1"]
    mix = runs.mixtures(list(table["run"]))
    assert np.all(mix.sum(axis=1) == table["train_tokens"])
    assert np.array_equal(mix[0], mix[1])  # seeds change the weights, not the data
    scores = runs.heldout_loss("random-s0")
    assert np.isfinite(scores.loss).all() and scores.tokens.min() > 0
    assert scores.groups[0] == -1 and np.isfinite(table["target"]).all()  # the --target texts: one more group
    again = run_cli(["proxy", root / "random", root / "clusterclip", "--eval", root / "eval", "--out", root / "runs",
                     "--model-config", loop["config"], "--seeds", 2, *PROXY_FLAGS])
    assert "already done" in again.output


def test_proxy_refuses_unfair_or_wrong_inputs(loop, tmp_path):
    root = loop["root"]
    run_cli(["schedule", loop["emb"], loop["cl"], "--out", tmp_path / "plain", "--tokenizer", loop["tok"],
             "--format", "bin"])
    code, out = invoke(["proxy", tmp_path / "plain", "--eval", root / "eval", "--out", tmp_path / "r1"])
    assert_one_line_error(code, out, "not written with --exclude")
    code, out = invoke(["proxy", root / "random", "--out", tmp_path / "r2"])
    assert_one_line_error(code, out, "--eval")
    run_cli(["schedule", loop["emb"], loop["cl"], "--out", tmp_path / "llmc", "--convention", "llm.c",
             *loop["common"]])
    code, out = invoke(["proxy", root / "random", tmp_path / "llmc", "--eval", root / "eval", "--out", tmp_path / "r5"])
    assert_one_line_error(code, out, "another tokenizer", "--convention")
    run_cli(["cluster", loop["emb"], "--out", tmp_path / "cl4", "--k", 4, "--seed", 1])
    run_cli(["holdout", loop["emb"], tmp_path / "cl4", "--out", tmp_path / "eval4"])
    code, out = invoke(["proxy", root / "random", "--eval", tmp_path / "eval4", "--out", tmp_path / "r3"])
    assert_one_line_error(code, out, "another cluster directory")
    code, out = invoke(["schedule", loop["emb"], loop["cl"], "--out", tmp_path / "s4", "--tokenizer", loop["tok"],
                        "--exclude", tmp_path / "eval4"])
    assert_one_line_error(code, out, "held out from another cluster directory")
    assert not any((tmp_path / r).exists() for r in ("r1", "r2", "r3", "r5", "s4"))


def test_fit_refuses_what_it_cannot_do(runs, tmp_path):
    code, out = invoke(["fit", runs[0], "--out", tmp_path / "fit", "--model", "loglinear"])
    assert_one_line_error(code, out, "2 schedules")  # fewer than any fit needs
    code, out = invoke(["fit", tmp_path / "nothing", "--out", tmp_path / "fit2"])
    assert_one_line_error(code, out, "nothing")
    assert not (tmp_path / "fit").exists()


@pytest.mark.slow
def test_the_mixture_search_loop_end_to_end(loop, tmp_path):
    """mixtures -> schedule --weights (shards) -> proxy -> fit -> propose -> schedule --weights: the documented loop."""
    from clusterclip.mixsearch.weights import read_provenance
    from clusterclip.schedule import ScheduleDir

    root, emb, cl = loop["root"], loop["emb"], loop["cl"]
    run_cli(["mixtures", emb, cl, "--out", tmp_path / "mix", "--dirichlet", 1.0, "--n", 8, "--samples", 50])
    scheds = []
    for i in range(8):
        out = tmp_path / f"m{i}"
        run_cli(["schedule", emb, cl, "--out", out, "--weights", tmp_path / "mix" / "weights" / f"mixture-{i:03d}.csv",
                 "--balance", "tokens", "--budget-tokens", 6000, "--max-repeats", 20, "--tokenizer", loop["tok"],
                 "--exclude", root / "eval", "--format", "bin"])
        scheds.append(out)
    run_cli(["proxy", *scheds, "--eval", root / "eval", "--out", tmp_path / "runs", "--model-config", loop["config"],
             *PROXY_FLAGS])
    fitted = run_cli(["fit", tmp_path / "runs", "--out", tmp_path / "fit"])
    assert "Spearman" in fitted.output and "loglinear" in fitted.output and "lightgbm" in fitted.output
    proposed = run_cli(["propose", tmp_path / "fit", "--out", tmp_path / "weights.csv", "--max-kl", 0.3,
                        "--budget-tokens", 60000, "--max-repeats", 20])
    assert "predicted" in proposed.output
    side = read_provenance(tmp_path / "weights.csv")
    assert side["proposal"]["kl_to_natural"] <= 0.3 + 1e-9
    assert side["inputs"]["fit"]["manifest_sha256"]
    again = run_cli(["propose", tmp_path / "fit", "--out", tmp_path / "weights.csv", "--max-kl", 0.3,
                     "--budget-tokens", 60000, "--max-repeats", 20])
    assert "already done" in again.output
    code, out = invoke(["propose", tmp_path / "fit", "--out", tmp_path / "weights.csv", "--max-kl", 0.1])
    assert_one_line_error(code, out, "--overwrite")
    run_cli(["schedule", emb, cl, "--out", tmp_path / "best", "--weights", tmp_path / "weights.csv", "--balance",
             "tokens", "--budget-tokens", 60000, "--max-repeats", 20, "--tokenizer", loop["tok"], "--exclude",
             root / "eval"])
    run_cli(["report", emb, cl, "--runs", tmp_path / "runs", "--fit", tmp_path / "fit", "--out", tmp_path / "report"])
    plotted = json.loads((tmp_path / "report" / "report.json").read_text())["figures"]["fit"]
    assert len(plotted["measured"]) == 8 and set(plotted["predicted"]) == {"loglinear", "lightgbm"}
    got = np.asarray(ScheduleDir(tmp_path / "best").statistics["cluster_tokens"], float)
    weights = np.array([float(line.split(",")[1]) for line in (tmp_path / "weights.csv").read_text().split()[1:]])
    assert np.abs(got / got.sum() - weights).max() < 0.05  # the proposal is what the sampler realises (to a document)


@pytest.mark.slow
def test_a_killed_proxy_step_resumes_and_fit_refuses_it_meanwhile(loop, tmp_path):
    from helpers import run_process

    root = loop["root"]
    args = ["proxy", root / "random", root / "clusterclip", "--eval", root / "eval", "--out", tmp_path / "runs",
            "--model-config", loop["config"], *PROXY_FLAGS]
    killed = run_process(*args, check=False, env={"CLUSTERCLIP_FAULT": "proxy.checkpoint:3"})
    assert killed.returncode == -9
    code, out = invoke(["fit", tmp_path / "runs", "--out", tmp_path / "fit"])
    assert_one_line_error(code, out, "did not finish")
    run_process(*args)
    straight = tmp_path / "straight"  # and side by side: two processes of one thread, the same losses
    run_cli(["proxy", root / "random", root / "clusterclip", "--eval", root / "eval", "--out", straight,
             "--model-config", loop["config"], *PROXY_FLAGS, "--workers", 2])
    from clusterclip.proxy.runfiles import RunsDir

    for name in ("random-s0", "clusterclip-s0"):
        assert np.array_equal(RunsDir(tmp_path / "runs").loss_curve(name)["loss"],
                              RunsDir(straight).loss_curve(name)["loss"])


def test_the_report_shows_the_proxies(loop, runs, tmp_path):
    run_cli(["report", loop["emb"], loop["cl"], "--runs", runs[0], "--out", tmp_path / "report"])
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    held = data["figures"]["heldout_loss"]["schedules"]
    assert set(held) == {"random", "clusterclip"} and held["random"]["runs"] == ["random-s0", "random-s1"]
    assert set(data["figures"]["loss_curves"]) == {"random-s0", "random-s1", "clusterclip-s0", "clusterclip-s1"}
    assert "What the orders do to a model" in (tmp_path / "report" / "index.html").read_text()
    run_cli(["cluster", loop["emb"], "--out", tmp_path / "cl3", "--k", 3])
    code, out = invoke(["report", loop["emb"], tmp_path / "cl3", "--runs", runs[0], "--out", tmp_path / "r2"])
    assert_one_line_error(code, out, "another clustering")
