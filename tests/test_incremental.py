"""Incremental embedding (``embed --incremental``) and ``cluster --assign-only``.

The property: for any sequence of corpus edits (add a file, change a row, delete a file), an
incremental run over the edited corpus gives the same ``docs.parquet``, embeddings, statistics
and accounting as a run from scratch, and encodes only the documents of the new or changed files.
A deterministic, batch-independent encoder makes "the same" byte-identical; the real model is
checked end to end through the CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterclip.cluster import ClusterDir, cluster_embeddings
from clusterclip.embed import EmbedDir, embed_corpus
from clusterclip.embed.encoder import Prepared
from clusterclip.errors import InputError, IntegrityError, MismatchError

from helpers import assert_one_line_error, invoke


class CountingEncoder:
    """Vectors from a hash of each text (independent of batching); counts what it encodes."""

    dim = 8
    max_words = 6

    def __init__(self, batches: int = 1):
        self.texts: list[str] = []
        self.batches = batches

    @property
    def settings(self) -> dict:
        return {"model": "counting", "max_length": self.max_words, "dtype": "float32", "device": "cpu"}

    def prepare(self, texts):
        words = [len(t.split()) for t in texts]
        flags = [w > self.max_words for w in words]
        return Prepared(list(texts), [min(w, self.max_words) for w in words], sum(flags), flags)

    def embed(self, prepared, on_progress=None):
        self.texts.extend(prepared.items)
        out = np.empty((len(prepared.items), self.dim), dtype=np.float32)
        for i, t in enumerate(prepared.items):
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            out[i] = v / np.linalg.norm(v)
        if on_progress is not None:
            for b in range(self.batches):
                on_progress((b + 1) / self.batches)
        return out


def write_file(path: Path, texts: list[str]) -> None:
    """A JSON lines corpus file, replaced atomically (a new inode: its change is always seen)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text("".join(json.dumps({"text": t, "id": f"{path.stem}-{i}"}) + "\n" for i, t in enumerate(texts)))
    os.replace(tmp, path)


def same_output(a: Path, b: Path) -> None:
    assert (a / "docs.parquet").read_bytes() == (b / "docs.parquet").read_bytes()
    pa_, pb = sorted(p.name for p in a.glob("embeddings-*.npy")), sorted(p.name for p in b.glob("embeddings-*.npy"))
    assert pa_ == pb
    for name in pa_:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ma, mb = EmbedDir(a).manifest, EmbedDir(b).manifest
    for key in ("statistics", "accounting", "per_file", "outputs", "inputs", "settings"):
        assert ma[key] == mb[key], key


texts_st = st.lists(st.sampled_from(["a b", "c d e f g h i j", "  ", "k", "l m n", "o p q r s t u v w"]),
                    min_size=1, max_size=7)
edit_st = st.one_of(
    st.tuples(st.just("add"), texts_st),
    st.tuples(st.just("change"), st.integers(0, 10), st.integers(0, 10), st.sampled_from(["x y", "  ", "z"])),
    st.tuples(st.just("delete"), st.integers(0, 10)),
)


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.lists(texts_st, min_size=1, max_size=4), edits=st.lists(edit_st, min_size=1, max_size=4),
       part_docs=st.integers(1, 6), window_docs=st.integers(1, 5))
def test_incremental_equals_from_scratch_and_encodes_only_changed_files(start, edits, part_docs, window_docs):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus, out = root / "corpus", root / "emb"
        files: dict[str, list[str]] = {}
        serial = 0
        for texts in start:
            files[f"f{serial:02d}.jsonl"] = texts
            serial += 1
        for name, texts in files.items():
            write_file(corpus / name, texts)
        kw = dict(id_column="id", part_docs=part_docs, window_docs=window_docs, progress=False)
        write_file(corpus / "anchor.jsonl", ["anchor doc"])  # the corpus is never empty
        embed_corpus([corpus], out, encoder=CountingEncoder(), **kw)
        for step, edit in enumerate(edits):
            before = {name: list(texts) for name, texts in files.items()}
            changed: set[str] = set()
            if edit[0] == "add":
                name = f"f{serial:02d}.jsonl"
                serial += 1
                files[name] = list(edit[1])
                changed.add(name)
            elif edit[0] == "change" and files:
                name = sorted(files)[edit[1] % len(files)]
                rows = files[name]
                if rows:
                    rows[edit[2] % len(rows)] = edit[3]
                else:
                    rows.append(edit[3])
                changed.add(name)
            elif edit[0] == "delete" and files:
                name = sorted(files)[edit[1] % len(files)]
                del files[name]
                (corpus / name).unlink()
            for name in changed:
                write_file(corpus / name, files[name])
            enc = CountingEncoder(batches=2)
            result = embed_corpus([corpus], out, encoder=enc, incremental=True, **kw)
            changed = {name for name in changed if before.get(name) != files[name]}  # an edit may change nothing
            expected = sorted(t for name in changed for t in files[name] if t.strip())
            assert sorted(enc.texts) == expected  # only the new and changed files were encoded
            scratch = root / f"scratch-{step}"
            embed_corpus([corpus], scratch, encoder=CountingEncoder(), **kw)
            same_output(out, scratch)
            inc = result.manifest.get("incremental")
            if result.state != "done":
                assert inc["embedded_docs"] == len(expected)
                assert inc["reused_docs"] + inc["embedded_docs"] == result.statistics["n_docs"]
                assert sorted(Path(p).name for p in inc["embedded"]) == sorted(changed)


def test_incremental_resumes_after_a_crash_and_reuses_nothing_from_a_damaged_old_output(tmp_path, monkeypatch):
    corpus, out = tmp_path / "corpus", tmp_path / "emb"
    for i in range(3):
        write_file(corpus / f"f{i}.jsonl", [f"doc {i} {j}" for j in range(5)])
    kw = dict(part_docs=2, window_docs=2, progress=False)
    embed_corpus([corpus], out, encoder=CountingEncoder(), **kw)
    write_file(corpus / "f3.jsonl", [f"new {j}" for j in range(6)])
    write_file(corpus / "f4.jsonl", [f"newer {j}" for j in range(6)])

    class Crash(Exception):
        pass

    crashing = CountingEncoder()
    calls = []

    def embed(prepared, on_progress=None):
        calls.append(1)
        if len(calls) == 4:
            raise Crash
        return CountingEncoder.embed(crashing, prepared, on_progress)

    crashing.embed = embed
    with pytest.raises(Crash):
        embed_corpus([corpus], out, encoder=crashing, incremental=True, **kw)
    assert len(EmbedDir(out).corpus_files) == 3  # the old output is still whole
    enc = CountingEncoder()
    result = embed_corpus([corpus], out, encoder=enc, incremental=True, **kw)
    assert result.state == "resume" and 0 < len(enc.texts) < 12  # the delta parts finished before the crash kept
    embed_corpus([corpus], tmp_path / "scratch", encoder=CountingEncoder(), **kw)
    same_output(out, tmp_path / "scratch")

    # a reused part whose bytes changed is refused, never copied
    write_file(corpus / "f5.jsonl", ["five"])
    part = out / "embeddings-00000.npy"
    data = bytearray(part.read_bytes())
    data[-1] ^= 1
    part.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="embeddings-00000.npy"):
        embed_corpus([corpus], out, encoder=CountingEncoder(), incremental=True, **kw)


def test_incremental_refusals_name_the_fix(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "emb"
    write_file(corpus / "a.jsonl", ["one", "two"])
    embed_corpus([corpus], out, encoder=CountingEncoder(), progress=False)
    write_file(corpus / "b.jsonl", ["three"])
    with pytest.raises(MismatchError, match=r"1 new or changed files.*--incremental"):
        embed_corpus([corpus], out, encoder=CountingEncoder(), progress=False)
    with pytest.raises(MismatchError, match=r"--incremental: .*other settings \(part_docs"):
        embed_corpus([corpus], out, encoder=CountingEncoder(), progress=False, incremental=True, part_docs=7)
    with pytest.raises(InputError, match="--limit: not with --incremental"):
        embed_corpus([corpus], out, encoder=CountingEncoder(), progress=False, incremental=True, limit=1)
    enc = CountingEncoder()  # a renamed file keeps its vectors (matched by content)
    (corpus / "a.jsonl").rename(corpus / "c.jsonl")
    r = embed_corpus([corpus], out, encoder=enc, progress=False, incremental=True)
    assert enc.texts == ["three"] and r.manifest["incremental"]["reused"][0]["from"].endswith("a.jsonl")
    assert [t for _, t in EmbedDir(out).texts([0, 1, 2])] == ["three", "one", "two"]
    assert embed_corpus([corpus], out, encoder=enc, progress=False, incremental=True).state == "done"



def test_a_moved_corpus_is_named_as_moved_and_incremental_embeds_nothing(tmp_path):
    """The same files at other paths (a copied or moved project): the refusal says so, with a path, and
    --incremental records the new paths without encoding a document."""
    old, new, out = tmp_path / "old", tmp_path / "new", tmp_path / "emb"
    write_file(old / "a.jsonl", ["one", "two"])
    embed_corpus([old], out, encoder=CountingEncoder(), progress=False)
    old.rename(new)
    with pytest.raises(MismatchError, match=r"same files at other paths \(.*new/a\.jsonl was .*old/a\.jsonl\); "
                                            r"pass --incremental to record the new paths"):
        embed_corpus([new], out, encoder=CountingEncoder(), progress=False)
    enc = CountingEncoder()
    r = embed_corpus([new], out, encoder=enc, progress=False, incremental=True)
    assert enc.texts == [] and r.manifest["per_file"][0]["path"].endswith("new/a.jsonl")
    assert [t for _, t in EmbedDir(out).texts([0, 1])] == ["one", "two"]


# --------------------------------------------------------------------------- cluster --assign-only
def _old_and_new(tmp_path):
    corpus, emb = tmp_path / "corpus", tmp_path / "emb"
    for i in range(4):
        write_file(corpus / f"f{i}.jsonl", [f"doc {i} {j} " + "w " * j for j in range(10)])
    embed_corpus([corpus], emb, encoder=CountingEncoder(), part_docs=7, progress=False)
    cl = tmp_path / "cl"
    cluster_embeddings(emb, cl, k=5, progress=False)
    old_labels = ClusterDir(cl).labels()
    old_docs = pq.read_table(emb / "docs.parquet").to_pylist()
    write_file(corpus / "f1.jsonl", ["changed"] * 3)
    write_file(corpus / "f9.jsonl", [f"new {j}" for j in range(5)])
    embed_corpus([corpus], emb, encoder=CountingEncoder(), part_docs=7, progress=False, incremental=True)
    return corpus, emb, cl, old_labels, old_docs


def test_assign_only_keeps_the_centroids_and_every_unchanged_documents_cluster(tmp_path):
    corpus, emb, cl, old_labels, old_docs = _old_and_new(tmp_path)
    new = tmp_path / "cl2"
    r = cluster_embeddings(emb, new, assign_only=cl, progress=False)
    assert r.statistics["assign_only"]["from"] == str(cl.resolve()) and r.statistics["n_docs"] == EmbedDir(emb).n_docs
    assert r.manifest["inputs"]["centroids"]["manifest_sha256"] == ClusterDir(cl).record()["manifest_sha256"]
    assert (new / "centroids.npy").read_bytes() == (cl / "centroids.npy").read_bytes()
    labels = ClusterDir(new).labels()
    before = {(d["source"], d["row"]): int(old_labels[d["doc_id"]]) for d in old_docs}
    now = pq.read_table(emb / "docs.parquet").to_pylist()
    kept = [(int(labels[d["doc_id"]]), before[(d["source"], d["row"])]) for d in now
            if not d["source"].endswith(("f1.jsonl", "f9.jsonl"))]
    assert len(kept) == 30 and all(a == b for a, b in kept)
    x = EmbedDir(emb).store().read(0, len(labels))
    c = np.load(cl / "centroids.npy")
    np.testing.assert_array_equal(labels, np.argmax(x @ c.T, axis=1))
    assert cluster_embeddings(emb, new, assign_only=cl, progress=False).state == "done"


def test_assign_only_refusals(tmp_path):
    corpus, emb, cl, _, _ = _old_and_new(tmp_path)
    with pytest.raises(InputError, match="--iters: not used with --assign-only"):
        cluster_embeddings(emb, tmp_path / "x", assign_only=cl, k=5, iters=3, progress=False)
    with pytest.raises(MismatchError, match="--k 4: .* holds 5 centroids"):
        cluster_embeddings(emb, tmp_path / "x", assign_only=cl, k=4, progress=False)
    other = tmp_path / "other"  # an embed output with no tie to the centroids' one (gone)
    write_file(tmp_path / "c2" / "z.jsonl", [f"z {j}" for j in range(9)])
    embed_corpus([tmp_path / "c2"], other, encoder=CountingEncoder(), progress=False)
    cl_other = tmp_path / "cl-other"
    cluster_embeddings(other, cl_other, k=2, progress=False)
    embed_corpus([tmp_path / "c2"], other, encoder=CountingEncoder(), progress=False, overwrite=True, part_docs=3)
    with pytest.raises(MismatchError, match="is gone or changed"):
        cluster_embeddings(emb, tmp_path / "x", assign_only=cl_other, progress=False)
    c = cl / "centroids.npy"
    data = bytearray(c.read_bytes())
    data[-1] ^= 1
    c.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="centroids.npy"):
        cluster_embeddings(emb, tmp_path / "x", assign_only=cl, progress=False)


def test_assign_only_copies_the_second_level(tmp_path):
    corpus, emb, cl, _, _ = _old_and_new(tmp_path)
    cl2 = tmp_path / "cl-l2"
    cluster_embeddings(emb, cl2, k=5, levels=2, k2=2, progress=False)
    r = cluster_embeddings(emb, tmp_path / "cl-l2-assigned", assign_only=cl2, progress=False)
    a = ClusterDir(cl2).clusters_table()
    b = ClusterDir(r.out).clusters_table()
    assert a.column("parent").to_pylist() == b.column("parent").to_pylist()
    assert r.statistics["level2"]["k"] == 2


@pytest.mark.slow
def test_cli_incremental_then_assign_only_with_the_real_model(tmp_path, small_docs):
    corpus = tmp_path / "corpus"
    texts = [d["text"] for d in small_docs]
    for i in range(3):
        write_file(corpus / f"f{i}.jsonl", texts[i * 12:(i + 1) * 12])
    emb, cl = tmp_path / "emb", tmp_path / "cl"
    common = ["--max-length", "32", "--device", "cpu", "--dtype", "float32", "--part-docs", "10"]
    code, output = invoke(["embed", corpus, "--out", emb, *common])
    assert code == 0, output
    before = EmbedDir(emb).store().read(0, 36)
    assert invoke(["cluster", emb, "--out", cl, "--k", "3"])[0] == 0
    write_file(corpus / "f1.jsonl", texts[36:44])
    assert_one_line_error(*invoke(["embed", corpus, "--out", emb, *common]), "--incremental")
    code, output = invoke(["embed", corpus, "--out", emb, *common, "--incremental"])
    assert code == 0 and "incremental: 1 files embedded, 2 reused = 24 docs" in output, output
    after = EmbedDir(emb).store()
    np.testing.assert_array_equal(after.read(0, 12), before[:12])  # reused: the same bits
    np.testing.assert_array_equal(after.read(20, 32), before[24:36])
    scratch = tmp_path / "scratch"
    assert invoke(["embed", corpus, "--out", scratch, *common])[0] == 0
    y = EmbedDir(scratch).store().read(0, 32)
    assert (np.einsum("ij,ij->i", after.read(0, 32), y) > 0.9999).all()
    assert (emb / "docs.parquet").read_bytes() == (scratch / "docs.parquet").read_bytes()
    code, output = invoke(["cluster", emb, "--out", tmp_path / "cl2", "--assign-only", cl])
    assert code == 0 and "not trained" in output, output
    assert_one_line_error(*invoke(["cluster", emb, "--out", tmp_path / "cl3"]), "--k", "--assign-only")
