"""What was made from an embed output stays usable after ``embed --incremental`` grows it (issue 26 item 4).

The replaced output is kept as a generation (``EMB/.clusterclip/generations/ID``: its manifest and hard links of
its files, the parts both share costing no space), so the clusters, schedules and reports that name its digest
still open it; the commands that would mix the old clusters with the grown embed output refuse in one line that
says what to run next (``cluster --assign-only`` or a new ``cluster``), as the embed summary does.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_incremental import CountingEncoder, write_file

from clusterclip.artifacts.manifest import manifest_digest, unchanged_upstream
from clusterclip.cluster import cluster_embeddings
from clusterclip.embed import EmbedDir, embed_corpus
from clusterclip.schedule import schedule_corpus

from helpers import assert_one_line_error, invoke, run_cli

_runs = itertools.count()


def _embed(corpus: Path, emb: Path, **kw):
    return embed_corpus([corpus], emb, encoder=CountingEncoder(), part_docs=7, progress=False, **kw)


def _grown(tmp_path: Path):
    """EMB embedded, clustered and scheduled; then a new file and ``embed --incremental``."""
    corpus, emb, cl, sched = tmp_path / "corpus", tmp_path / "emb", tmp_path / "cl", tmp_path / "sched"
    for i in range(3):
        write_file(corpus / f"f{i}.jsonl", [f"doc {i} {j} " + "w " * j for j in range(9)])
    _embed(corpus, emb)
    cluster_embeddings(emb, cl, k=3, progress=False)
    schedule_corpus(emb, cl, sched, dry_run=True, samples=20, progress=False)
    before = manifest_digest(emb)
    write_file(corpus / "f9.jsonl", [f"new {j}" for j in range(5)])
    grown = _embed(corpus, emb, incremental=True)
    return corpus, emb, cl, sched, before, grown


def test_the_replaced_output_stays_readable_and_shares_the_unchanged_parts(tmp_path):
    _, emb, cl, sched, before, grown = _grown(tmp_path)
    kept = unchanged_upstream({"path": str(emb.resolve()), "manifest_sha256": before})
    assert kept is not None and kept != emb.resolve() and manifest_digest(kept) == before
    old = EmbedDir(kept, verify=True)  # every file of the kept generation has its recorded sha256
    assert old.n_docs == 27 and EmbedDir(emb).n_docs == 32
    shared = [r["path"] for r in old.manifest["outputs"] if (emb / r["path"]).is_file()
              and os.stat(emb / r["path"]).st_ino == os.stat(kept / r["path"]).st_ino]
    assert {"embeddings-00000.npy", "embeddings-00001.npy", "embeddings-00002.npy"} <= set(shared)
    assert "next: `clusterclip cluster" in grown.summary and "--assign-only" in grown.summary
    assert "ok (embed" in run_cli(["verify", emb]).output


def test_every_downstream_command_after_an_incremental_embed(tmp_path):
    _, emb, cl, sched, before, _ = _grown(tmp_path)
    # the old clusters and the grown output are not mixed silently: one line saying what to run next
    for args in (["cluster", emb, "--out", cl, "--k", 3],
                 ["schedule", emb, cl, "--out", sched, "--dry-run", "--samples", 20],
                 ["schedule", emb, cl, "--out", tmp_path / "s-new", "--dry-run", "--samples", 20]):
        code, output = invoke(args)
        assert_one_line_error(code, output, "embed --incremental", f"--assign-only {cl}", "--out NEW_CL")
    # what was made before still reads the embed output as it was
    shown = run_cli(["inspect", sched, "--sample", 0]).output
    assert "f0.jsonl" in shown or "f1.jsonl" in shown or "f2.jsonl" in shown
    assert "is gone" not in shown
    assert "27 documents" in run_cli(["clusters", cl]).output
    named = run_cli(["clusters", cl, "--emb", emb, "--show", 0]).output  # EMB named: its generation CL was made from
    assert "27 documents" in named or "doc " in named
    for d in (emb, cl, sched):
        run_cli(["verify", d])
    # the two ways on
    assert "not trained" in run_cli(["cluster", emb, "--assign-only", cl, "--out", tmp_path / "cl2"]).output
    run_cli(["schedule", emb, tmp_path / "cl2", "--out", tmp_path / "s2", "--dry-run", "--samples", 20])
    run_cli(["cluster", emb, "--out", cl, "--k", 3, "--overwrite"])
    run_cli(["schedule", emb, cl, "--out", sched, "--dry-run", "--samples", 20, "--overwrite"])
    assert "32 documents" in run_cli(["clusters", cl]).output


edit_st = st.one_of(st.tuples(st.just("add"), st.integers(1, 9)),
                    st.tuples(st.just("change"), st.integers(0, 5)),
                    st.tuples(st.just("delete"), st.integers(0, 5)))


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(edit_st, min_size=1, max_size=3), part_docs=st.integers(2, 8))
def test_every_generation_stays_readable_as_it_was(tmp_path, edits, part_docs):
    """Over any sequence of edits and incremental runs, every earlier output of EMB (by manifest digest, as a
    cluster or schedule records it) still opens, with its very documents and vectors."""
    root = tmp_path / f"r{next(_runs)}"
    corpus, emb = root / "corpus", root / "emb"
    write_file(corpus / "a.jsonl", [f"a {j} " + "w " * j for j in range(5)])
    seen = {}
    for step, edit in enumerate([None, *edits]):
        if edit is not None:
            kind, x = edit
            files = sorted(corpus.glob("*.jsonl"))
            if kind == "add":
                write_file(corpus / f"n{step}.jsonl", [f"n {step} {j}" for j in range(x)])
            elif kind == "change":
                write_file(files[x % len(files)], [f"changed {step}"] * 2)
            elif len(files) > 1:
                files[x % len(files)].unlink()
        embed_corpus([corpus], emb, encoder=CountingEncoder(), part_docs=part_docs, progress=False,
                     incremental=edit is not None)
        e = EmbedDir(emb)
        seen[manifest_digest(emb)] = (pq.read_table(e.docs_file()).to_pylist(), e.store().read(0, e.n_docs).tobytes())
    for digest, (docs, vectors) in seen.items():
        kept = unchanged_upstream({"path": str(emb.resolve()), "manifest_sha256": digest})
        assert kept is not None
        e = EmbedDir(kept, verify=True)
        assert pq.read_table(e.docs_file()).to_pylist() == docs and e.store().read(0, e.n_docs).tobytes() == vectors


@pytest.mark.slow
def test_a_report_of_the_old_clusters_after_an_incremental_embed(tmp_path):
    """``report EMB CL`` with the grown EMB reads the documents as CL's embed output held them (the generation)."""
    _, emb, cl, sched, before, _ = _grown(tmp_path)
    shown = run_cli(["report", emb, cl, "--out", tmp_path / "report"]).output
    assert "report:" in shown
    recorded = json.loads((tmp_path / "report" / "manifest.json").read_text())["inputs"]["embed"]
    assert recorded["manifest_sha256"] == before and "generations" in recorded["path"]
