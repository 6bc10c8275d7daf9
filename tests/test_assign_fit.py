"""``cluster --assign-only``: new documents that fit no old cluster are reported, not hidden (issue 26 item 5).

The manifest records the cosine distribution of the new and the old documents to their centroids
(``statistics.assign_only.fit``); a warning with those figures and the re-clustering command is
printed when the new documents lie far outside the old ones' distribution, and never when they
come from the same distribution.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterclip.cluster import cluster_embeddings
from clusterclip.cluster.fit import MIN_SHARE_BELOW, QUANTILES, describe, fit_record, fit_warning
from clusterclip.embed import embed_corpus
from clusterclip.embed.encoder import Prepared

from helpers import invoke, stdlib_docs


class TopicEncoder:
    """Vectors near one of a few orthogonal topic directions, chosen by a text's first word (``t0``..``t7``),
    with a small deterministic jitter from a hash of the text."""

    dim = 16

    @property
    def settings(self) -> dict:
        return {"model": "topics", "max_length": 64, "dtype": "float32", "device": "cpu"}

    def prepare(self, texts):
        return Prepared(list(texts), [len(t.split()) for t in texts], 0, [False] * len(texts))

    def embed(self, prepared, on_progress=None):
        out = np.zeros((len(prepared.items), self.dim), np.float32)
        for i, t in enumerate(prepared.items):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = 0.15 * np.random.default_rng(seed).standard_normal(self.dim)
            v[int(t.split()[0][1:])] += 1.0
            out[i] = v / np.linalg.norm(v)
        if on_progress is not None:
            on_progress(1.0)
        return out


def write_file(path: Path, texts) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    os.replace(tmp, path)


def _clustered(tmp_path, new_topic: int, n_new: int = 30):
    corpus, emb, cl = tmp_path / "corpus", tmp_path / "emb", tmp_path / "cl"
    for topic in range(3):
        write_file(corpus / f"old{topic}.jsonl", [f"t{topic} old document {j}" for j in range(40)])
    embed_corpus([corpus], emb, encoder=TopicEncoder(), progress=False)
    cluster_embeddings(emb, cl, k=3, progress=False)
    write_file(corpus / "new.jsonl", [f"t{new_topic} new document {j}" for j in range(n_new)])
    embed_corpus([corpus], emb, encoder=TopicEncoder(), progress=False, incremental=True)
    return emb, cl


@pytest.mark.parametrize("new_topic, fits", [(7, False), (1, True)])
def test_assign_only_records_the_fit_and_warns_when_new_documents_fit_no_cluster(tmp_path, new_topic, fits):
    emb, cl = _clustered(tmp_path, new_topic)
    messages: list[str] = []
    r = cluster_embeddings(emb, tmp_path / "cl2", assign_only=cl, progress=False, log=messages.append)
    fit = r.statistics["assign_only"]["fit"]
    assert fit["new"]["n"] == 30 and fit["old"]["n"] == 120 and fit["all"]["n"] == 150
    assert fit["new_documents"] == "the files the incremental embed embedded"
    assert set(fit["old"]["quantiles"]) == {f"p{round(q * 100):02d}" for q in QUANTILES}
    assert fit["fits"] is fits
    warnings = [m for m in messages if "fit no old cluster" in m]
    if fits:
        assert not warnings and fit["share_below_reference"] < MIN_SHARE_BELOW
        assert abs(fit["new"]["mean"] - fit["old"]["mean"]) < 0.05
    else:
        assert len(warnings) == 1 and fit["below_reference"] == 30
        assert fit["new"]["mean"] < 0.5 < 0.8 < fit["old"]["mean"]
        line = warnings[0]
        assert f"{fit['new']['mean']:.3f}" in line and f"{fit['old']['mean']:.3f}" in line
        assert "30 of the 30 new documents (100 %)" in line and f"clusterclip cluster {emb}" in line
        assert "\n" not in line


def test_assign_only_to_its_own_embed_output_has_no_new_documents(tmp_path):
    emb, cl = _clustered(tmp_path, 7)
    cl_now = tmp_path / "cl-now"
    cluster_embeddings(emb, cl_now, k=4, progress=False)
    messages: list[str] = []
    r = cluster_embeddings(emb, tmp_path / "again", assign_only=cl_now, progress=False, log=messages.append)
    fit = r.statistics["assign_only"]["fit"]
    assert fit["new"] is None and fit["fits"] and fit["new_documents"].startswith("none")
    assert fit["old"] == fit["all"] and not [m for m in messages if "fit no old cluster" in m]


@settings(max_examples=200, deadline=None)
@given(old=st.lists(st.floats(-1, 1), min_size=1, max_size=200), copies=st.integers(1, 4),
       gap=st.floats(0.01, 1.0))
def test_documents_from_the_old_distribution_fit_and_documents_below_it_do_not(old, copies, gap):
    old_sim = np.asarray(old, np.float32)
    same = np.tile(old_sim, copies)  # the old distribution itself: below its (interpolated) 5th percentile
    record = fit_record(same, old_sim, None, "unknown")  # are at most floor(0.05 (n - 1)) + 1 of every n
    n = len(old)
    assert record["fits"] and record["share_below_reference"] <= (int(0.05 * (n - 1)) + 1) / n + 1e-6  # (rounded to 6 decimals)
    lower = (old_sim.min() - gap) * np.ones(max(len(old), 5), np.float32)  # every one below all old documents
    record = fit_record(np.concatenate([old_sim, lower]), old_sim,
                        np.r_[np.zeros(len(old), bool), np.ones(len(lower), bool)], "test")
    assert not record["fits"] and record["below_reference"] == len(lower) and record["new"]["n"] == len(lower)
    assert fit_warning(record, "CL_OLD", "EMB", 3).startswith(f"{len(lower):,} of the {len(lower):,} new documents")


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(-1, 1), min_size=1, max_size=100))
def test_describe_gives_ordered_quantiles_within_the_range(values):
    d = describe(np.asarray(values, np.float32))
    q = list(d["quantiles"].values())
    assert d["n"] == len(values) and d["min"] <= q[0] and q == sorted(q) and q[-1] <= d["max"]
    assert d["min"] - 1e-6 <= d["mean"] <= d["max"] + 1e-6


@pytest.mark.slow
def test_real_model_pytorch_docstrings_assigned_to_stdlib_clusters_are_reported(tmp_path):
    """The issue's case, smaller: stdlib docstrings clustered, then PyTorch docstrings assigned to them."""
    import torch

    corpus, emb, cl = tmp_path / "corpus", tmp_path / "emb", tmp_path / "cl"
    write_file(corpus / "stdlib.jsonl", [d["text"] for d in stdlib_docs(200)])
    common = ["--max-length", "64", "--device", "cpu", "--dtype", "float32"]
    assert invoke(["embed", corpus, "--out", emb, *common])[0] == 0
    assert invoke(["cluster", emb, "--out", cl, "--k", "8"])[0] == 0
    texts = _torch_docstrings(torch, 60)
    write_file(corpus / "torch.jsonl", texts)
    assert invoke(["embed", corpus, "--out", emb, *common, "--incremental"])[0] == 0
    code, output = invoke(["cluster", emb, "--out", tmp_path / "cl2", "--assign-only", cl])
    assert code == 0, output
    fit = json.loads((tmp_path / "cl2" / "manifest.json").read_text())["statistics"]["assign_only"]["fit"]
    assert fit["new"]["n"] == len(texts) and fit["new"]["mean"] < fit["old"]["mean"] and not fit["fits"]
    assert "fit no old cluster" in output and "re-cluster" in output.lower()
    print(json.dumps({k: fit[k] for k in ("new", "old", "below_reference", "share_below_reference", "fits")}))


def _torch_docstrings(torch, n: int) -> list[str]:
    import inspect

    texts: list[str] = []
    for module in (torch.nn.functional, torch.nn, torch.optim, torch):
        for name in sorted(vars(module)):
            doc = inspect.getdoc(getattr(module, name))
            if not name.startswith("_") and doc and len(doc) >= 200 and doc not in texts:
                texts.append(doc)
                if len(texts) == n:
                    return texts
    return texts
