"""Proxy models (issue 24, SPEC §7): the held-out draw, the sequential loader, held-out scoring, and a run end
to end on a real schedule: deterministic, resumable after a kill, re-scored by transformers alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterclip.errors import InputError
from clusterclip.proxy.heldout import heldout_counts, select_heldout
from clusterclip.proxy.score import windows_of
from clusterclip.proxy.settings import ProxySettings
from clusterclip.proxy.stream import SequentialLoader
from clusterclip.proxy.train import learning_rate

from helpers import REPO

TINY = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 2, "tie_word_embeddings": True}


# --------------------------------------------------------------------------- the held-out draw
labels_st = st.lists(st.integers(0, 7), min_size=1, max_size=200)


@settings(max_examples=80, deadline=None)
@given(labels=labels_st, per_cluster=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_heldout_per_cluster_is_stratified_seeded_and_keeps_a_document_per_cluster(labels, per_cluster, seed):
    labels = np.array(labels)
    sizes = np.bincount(labels)
    sel = select_heldout(labels, per_cluster=per_cluster, seed=seed)
    assert np.all(np.diff(sel.doc_id) > 0)
    assert np.array_equal(sel.cluster, labels[sel.doc_id])
    got = np.bincount(sel.cluster, minlength=len(sizes))
    assert np.array_equal(got, np.clip(np.minimum(per_cluster, sizes - 1), 0, None))
    assert np.all(got[sizes > 0] < sizes[sizes > 0])  # every cluster keeps a document to train on
    assert np.array_equal(sel.unscored, np.flatnonzero(sizes == 1))
    again = select_heldout(labels, per_cluster=per_cluster, seed=seed)
    assert np.array_equal(again.doc_id, sel.doc_id)
    more = select_heldout(labels, per_cluster=per_cluster + 3, seed=seed)
    assert np.isin(sel.doc_id, more.doc_id).all()  # raising --per-cluster keeps every earlier document


@settings(max_examples=60, deadline=None)
@given(labels=labels_st, fraction=st.floats(0.01, 0.5), seed=st.integers(0, 100))
def test_heldout_fraction_rounds_to_at_least_one(labels, fraction, seed):
    labels = np.array(labels)
    sizes = np.bincount(labels)
    sel = select_heldout(labels, fraction=fraction, seed=seed)
    got = np.bincount(sel.cluster, minlength=len(sizes))
    want = np.clip(np.minimum(np.maximum(np.floor(fraction * sizes + 0.5), 1), sizes - 1), 0, None)
    assert np.array_equal(got, want)


def test_heldout_refuses_both_rules_and_bad_values():
    with pytest.raises(InputError, match="--per-cluster and --fraction"):
        heldout_counts(np.array([4]), per_cluster=2, fraction=0.1)
    with pytest.raises(InputError, match="--fraction 0.9"):
        heldout_counts(np.array([4]), fraction=0.9)
    with pytest.raises(InputError, match="--per-cluster 0"):
        heldout_counts(np.array([4]), per_cluster=0)


# --------------------------------------------------------------------------- the loader
def readme_llmc_windows(files, B, T):
    """The README's llm.c loop (shuffling off): every (x, y) of one pass, in order."""
    out = []
    for tokens in files:
        for step in range((len(tokens) - 1) // (B * T)):
            window = tokens[step * B * T: (step + 1) * B * T + 1]
            out.append((window[:-1].reshape(B, T), window[1:].reshape(B, T)))
    return out


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 90), min_size=1, max_size=5), B=st.integers(1, 3), T=st.integers(1, 8),
       steps=st.integers(0, 40))
def test_loader_reads_as_the_readme_llmc_loop_and_counts_its_inputs(lengths, B, T, steps):
    rng = np.random.default_rng(sum(lengths) + B + T)
    files = [rng.integers(0, 1000, n).astype(np.uint16) for n in lengths]
    loader = SequentialLoader(files, B, T)
    reference = readme_llmc_windows(files, B, T)
    assert loader.steps_per_pass == len(reference)
    if not reference:
        return
    cover = [np.zeros(len(f), np.int64) for f in files]
    for step in range(steps):
        x, y = loader.batch(step)
        rx, ry = reference[step % len(reference)]  # after the last file, the first again
        assert np.array_equal(x, rx) and np.array_equal(y, ry)
        k, a = loader.where(step)
        cover[k][a: a + B * T] += 1
    for got, want in zip(loader.input_coverage(steps), cover):
        assert np.array_equal(got, want)


# --------------------------------------------------------------------------- scoring windows, learning rate
@settings(max_examples=80, deadline=None)
@given(lengths=st.lists(st.integers(0, 50), max_size=8), context=st.integers(1, 12))
def test_windows_cover_every_prediction_once_without_overlap(lengths, context):
    doc, start, n = windows_of(np.array(lengths, dtype=np.int64), context)
    for d, length in enumerate(lengths):
        mine = doc == d
        assert n[mine].sum() == max(length - 1, 0)
        assert np.all(n[mine] >= 1) and np.all(n[mine] <= context)
        assert np.array_equal(start[mine], np.arange(mine.sum()) * context)  # consecutive, non-overlapping


def test_learning_rate_warms_up_then_decays_to_its_floor():
    s = ProxySettings(lr=1e-3, warmup=0.1, min_lr_ratio=0.1)
    lrs = [learning_rate(i, 100, s) for i in range(100)]
    assert lrs[9] == pytest.approx(1e-3) and np.all(np.diff(lrs[:10]) > 0)
    assert np.all(np.diff(lrs[10:]) <= 0) and lrs[-1] == pytest.approx(1e-4, rel=0.01)


def test_proxy_settings_refuse_bad_values():
    with pytest.raises(InputError, match="--device gpu0"):
        ProxySettings(device="gpu0")
    with pytest.raises(InputError, match="--format 'mds'"):
        ProxySettings(format="mds")


def test_model_config_errors_are_one_line(tmp_path):
    from clusterclip.proxy.model import model_config

    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({**TINY, "vocab_size": 10}))
    with pytest.raises(InputError, match="vocab_size 10 is smaller"):
        model_config(2048, 32, bad)
    bad.write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(InputError, match="no model_type"):
        model_config(2048, 32, bad)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        model_config(2048, 32, bad)
    with pytest.raises(InputError, match="no such file"):
        model_config(2048, 32, tmp_path / "missing.json")
    bad.write_text(json.dumps({**TINY, "max_position_embeddings": 16}))
    with pytest.raises(InputError, match="max_position_embeddings 16"):
        model_config(2048, 32, bad)


# --------------------------------------------------------------------------- a run on a real schedule
@pytest.fixture(scope="module")
def proxy_inputs(tmp_path_factory, embedded, clustered, demo_tokenizer):
    """A real schedule (bin shards), the held-out documents tokenized with its tokenizer, a tiny config."""
    from clusterclip.cluster.directory import ClusterDir
    from clusterclip.embed.directory import EmbedDir
    from clusterclip.proxy.heldout import heldout_samples, schedule_tokenizer, tokenize_heldout
    from clusterclip.schedule import ScheduleDir, schedule_corpus

    root = tmp_path_factory.mktemp("proxy")
    schedule_corpus(embedded, clustered, root / "sched", tokenizer=str(demo_tokenizer), formats=("bin", "raw"),
                    epochs=3, shard_tokens=4000, progress=False)
    sched = ScheduleDir(root / "sched")
    sel = select_heldout(ClusterDir(clustered).labels(), per_cluster=2, seed=0)
    texts = [t for _, t in EmbedDir(embedded).texts(sel.doc_id)]
    tok = schedule_tokenizer(sched)
    store = tokenize_heldout(texts, tok, root / "evaltokens")
    docs = heldout_samples(store, np.arange(len(texts)), bos_id=tok.bos_id, eos_id=tok.eos_id)
    config = root / "tiny.json"
    config.write_text(json.dumps(TINY))
    return {"root": root, "sched": root / "sched", "docs": docs, "groups": sel.cluster.astype(np.int64),
            "config": config, "k": ClusterDir(clustered).k}


def _run(inputs, run_dir, *, fmt="bin", steps=24, seed=0):
    from clusterclip.proxy.run import EvalDocs, train_and_score
    from clusterclip.proxy.stream import open_schedule_stream
    from clusterclip.schedule import ScheduleDir

    s = ProxySettings(format=fmt, context=32, batch=4, model_config=str(inputs["config"]), checkpoint_every=8,
                      threads=1, device="cpu", dtype="float32")
    stream = open_schedule_stream(ScheduleDir(inputs["sched"]), fmt, s.batch, s.context)
    return train_and_score(stream, EvalDocs(inputs["docs"], inputs["groups"]), s, seed=seed, steps=steps,
                           n_clusters=inputs["k"], run_dir=run_dir, progress=False)


def _curve(run_dir):
    from clusterclip.proxy.runfiles import read_loss_curve

    return read_loss_curve(run_dir)["loss"]


def test_a_run_is_deterministic_and_reads_bin_and_raw_alike(proxy_inputs, tmp_path):
    a = _run(proxy_inputs, tmp_path / "a")
    b = _run(proxy_inputs, tmp_path / "b")
    raw = _run(proxy_inputs, tmp_path / "raw", fmt="raw")
    assert np.array_equal(_curve(tmp_path / "a"), _curve(tmp_path / "b"))  # to the last digit
    assert np.array_equal(_curve(tmp_path / "a"), _curve(tmp_path / "raw"))  # the same stream through nanoGPT's reader
    assert a["balanced"] == b["balanced"] == raw["balanced"]
    other = _run(proxy_inputs, tmp_path / "seed1", seed=1)
    assert other["balanced"] != a["balanced"]
    assert sum(a["mixture_tokens"]) == a["train_tokens"] == 24 * 4 * 32


def test_the_realised_mixture_counts_the_clusters_of_the_trained_tokens(proxy_inputs):
    from clusterclip.proxy.stream import open_schedule_stream, trained_cluster_tokens
    from clusterclip.schedule import ScheduleDir
    from clusterclip.shards import read_stream

    sched = ScheduleDir(proxy_inputs["sched"])
    stream = open_schedule_stream(sched, "bin", 4, 32)
    tokens, starts = read_stream(sched.path, "bin")
    cluster_of_token = np.repeat(stream.sample_clusters, np.diff(np.append(starts, len(tokens))))
    for steps in (1, stream.loader.steps_per_pass, stream.loader.steps_per_pass + 3):
        want = np.zeros(proxy_inputs["k"], np.int64)
        for step in range(steps):  # where each input token of each step lies in the stream
            k, a = stream.loader.where(step)
            rec = stream.records[k]
            own = np.arange(a, min(a + 128, rec["tokens"]))
            np.add.at(want, cluster_of_token[rec["start_token"] + own], 1)
        assert np.array_equal(trained_cluster_tokens(stream, steps, proxy_inputs["k"]), want)


def test_a_saved_proxy_is_rescored_by_transformers_alone(proxy_inputs, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from clusterclip.proxy.runfiles import read_heldout_loss

    rec = _run(proxy_inputs, tmp_path / "run")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model").eval()
    sums, counts = {}, {}
    with torch.no_grad():
        for doc, cluster in zip(proxy_inputs["docs"], proxy_inputs["groups"]):
            for a in range(0, len(doc) - 1, 32):  # consecutive windows of 32 inputs (+ the next token)
                window = torch.tensor(doc[a: a + 33]).unsqueeze(0)
                loss = model(input_ids=window, labels=window).loss
                sums[cluster] = sums.get(cluster, 0.0) + float(loss) * (window.shape[1] - 1)
                counts[cluster] = counts.get(cluster, 0) + window.shape[1] - 1
    scores = read_heldout_loss(tmp_path / "run")
    assert list(scores.groups) == sorted(sums)
    assert list(scores.tokens) == [counts[c] for c in scores.groups]
    np.testing.assert_allclose(scores.loss, [sums[c] / counts[c] for c in scores.groups], rtol=1e-5)
    assert rec["balanced"] == pytest.approx(np.mean([sums[c] / counts[c] for c in sums]), rel=1e-5)


RESUME_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from test_proxy import _run
    inputs = json.load(open(sys.argv[1]))
    inputs["docs"] = [np.array(d) for d in inputs["docs"]]
    inputs["groups"] = np.array(inputs["groups"])
    rec = _run(inputs, sys.argv[2])
    print(json.dumps(rec["resumed_at_step"]))
""")


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_losses(proxy_inputs, tmp_path):
    spec = tmp_path / "inputs.json"
    spec.write_text(json.dumps({**{k: str(v) for k, v in proxy_inputs.items() if k in ("sched", "config")},
                                "k": proxy_inputs["k"], "docs": [d.tolist() for d in proxy_inputs["docs"]],
                                "groups": proxy_inputs["groups"].tolist()}))
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT.format(tests=str(REPO / "tests")))
    env = {**os.environ, "PYTHONPATH": str(REPO), "CLUSTERCLIP_NO_PROGRESS": "1"}
    killed = subprocess.run([sys.executable, script, spec, tmp_path / "run"], env={**env, "CLUSTERCLIP_FAULT":
                            "proxy.checkpoint:2"}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "run" / "checkpoint.pt").is_file() and not (tmp_path / "run" / "model").exists()
    resumed = subprocess.run([sys.executable, script, spec, tmp_path / "run"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1]) == 16  # from its second checkpoint
    _run(proxy_inputs, tmp_path / "straight")
    assert np.array_equal(_curve(tmp_path / "run"), _curve(tmp_path / "straight"))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


# --------------------------------------------------------------------------- several proxies in one process
def _tiny_members(n, vocab=256, context=16):
    from clusterclip.proxy.model import build_model, model_config

    config = model_config(vocab, context, architecture=TINY)
    return [build_model(config, seed=i) for i in range(n)]


def test_an_ensemble_trains_each_member_as_it_trains_alone(tmp_path):
    import torch

    from clusterclip.proxy.ensemble import train_ensemble
    from clusterclip.proxy.train import Runtime, deterministic, train

    s = ProxySettings(context=16, batch=2, lr=3e-3, checkpoint_every=4, threads=1, device="cpu", dtype="float32")
    runtime = Runtime("cpu", None, 1, False)
    data = [np.random.default_rng(i).integers(0, 256, (10, 2, 17)) for i in range(3)]

    def batches(i, fail_at=None):
        def get(step):
            if step == fail_at:
                raise KeyboardInterrupt  # a crash after the checkpoint of step 4
            return data[i][step][:, :-1], data[i][step][:, 1:]
        return get

    with deterministic(runtime):
        alone = [train(m, batches(i), 10, s, runtime, progress=False) for i, m in enumerate(_tiny_members(3))]
        members = _tiny_members(3)
        together = train_ensemble(members, [batches(i) for i in range(3)], 10, s, runtime, progress=False)
        for a, b in zip(alone, together):
            np.testing.assert_allclose(a.losses, b.losses, atol=1e-5)  # float rounding of batched products
        ckpt = tmp_path / "ensemble.pt"
        with pytest.raises(KeyboardInterrupt):
            train_ensemble(_tiny_members(3), [batches(i, fail_at=6) for i in range(3)], 10, s, runtime,
                           checkpoint_path=ckpt, progress=False)
        resumed = train_ensemble(_tiny_members(3), [batches(i) for i in range(3)], 10, s, runtime,
                                 checkpoint_path=ckpt, progress=False)
    assert [r.resumed_at for r in resumed] == [4, 4, 4]
    assert [r.losses for r in resumed] == [r.losses for r in together]  # to the last digit
    trained = dict(members[1].named_parameters())
    solo_model = _tiny_members(3)[1]
    with deterministic(runtime):
        train(solo_model, batches(1), 10, s, runtime, progress=False)
    for name, p in solo_model.named_parameters():
        torch.testing.assert_close(trained[name], p, atol=1e-4, rtol=1e-3)
