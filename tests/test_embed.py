"""The ``embed`` step: artifacts, accuracy against a plain reference, determinism, resume,
sharding + merge, long documents, and one-line errors through the CLI.

Kept fast: ~50 real documents (stdlib docstrings) at ``max_length`` 32, one model load
shared by the library tests (the CLI tests load it again, which is cheap once imported).
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from clusterclip import embedding
from clusterclip.artifacts import EmbeddingStore
from clusterclip.embedding import DEFAULT_MODEL_NAME, Encoder, embed_corpus, merge_embeddings
from clusterclip.errors import InputError, MismatchError
from clusterclip.readers import read_texts

from test_readers import write_jsonl, write_parquet

MAXLEN = 32
PART = 16


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def encoder():
    return Encoder(max_length=MAXLEN, device="cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, small_docs):
    """Parquet (several row groups) + a directory with .jsonl.gz and .jsonl.zst, one empty doc."""
    root = tmp_path_factory.mktemp("embed-corpus")
    d = [{"id": x["id"], "text": x["text"]} for x in small_docs]
    a = write_parquet(root / "a.parquet", {"text": [x["text"] for x in d[:20]], "id": [x["id"] for x in d[:20]]},
                      row_group_size=6)
    b_recs = d[20:34]
    b_recs.insert(3, {"id": "empty", "text": " \n "})
    write_jsonl(root / "more" / "b.jsonl.gz", b_recs, "gz")
    write_jsonl(root / "more" / "sub" / "c.jsonl.zst", d[34:], "zst")
    expected = [x for x in d[:20]] + [x for x in b_recs if x["text"].strip()] + d[34:]
    return {"root": root, "inputs": [a, root / "more"], "texts": [x["text"] for x in expected],
            "ids": [x["id"] for x in expected]}


@pytest.fixture(scope="module")
def oneshot(tmp_path_factory, corpus, encoder):
    out = tmp_path_factory.mktemp("oneshot") / "emb"
    manifest = embed_corpus(corpus["inputs"], out, id_column="id", encoder=encoder, part_docs=PART, progress=False)
    return out, manifest


def reference_embeddings(texts, max_length=MAXLEN):
    """Plain fp32 Hugging Face model, one document at a time, masked mean pooling, L2 norm."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = embedding.default_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    out = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, truncation=True, max_length=max_length, return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            v = (h * m).sum(1) / m.sum(1)
            out.append(torch.nn.functional.normalize(v, dim=1)[0].numpy())
    return np.stack(out)


def dir_bytes(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if p.is_file()}


# --------------------------------------------------------------------------- artifacts
def test_artifacts_follow_the_spec(oneshot, corpus):
    out, manifest = oneshot
    n = len(corpus["texts"])
    docs = pq.read_table(out / "docs.parquet")
    assert docs.schema.names == ["doc_id", "source", "row", "n_chars", "id"]
    assert [str(t) for t in docs.schema.types] == ["int64", "string", "int64", "int64", "string"]
    assert docs.column("doc_id").to_pylist() == list(range(n))
    assert docs.column("id").to_pylist() == corpus["ids"]
    assert docs.column("n_chars").to_pylist() == [len(t) for t in corpus["texts"]]
    sources = docs.column("source").to_pylist()
    assert sources[0].endswith("a.parquet") and sources[-1].endswith("c.jsonl.zst")
    assert docs.column("row").to_pylist()[20:24] == [0, 1, 2, 4]  # the empty line 3 of b is skipped
    parts = sorted(glob.glob(str(out / "embeddings-*.npy")))
    assert len(parts) == -(-n // PART)
    x = np.concatenate([np.load(p) for p in parts])
    assert x.shape == (n, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert not (out / ".parts").exists() and not (out / ".clusterclip-job.json").exists()
    m = json.loads((out / "manifest.json").read_text())
    assert m["step"] == "embed" and m == dict(manifest)
    s, st = m["settings"], m["statistics"]
    assert (s["text_column"], s["id_column"], s["model"], s["max_length"]) == ("text", "id", DEFAULT_MODEL_NAME, MAXLEN)
    assert (st["n_docs"], st["dim"], st["skipped_empty"]) == (n, 384, 1) and st["tokens"] > n
    assert [Path(f["path"]).name for f in m["inputs"]["files"]] == ["a.parquet", "b.jsonl.gz", "c.jsonl.zst"]
    # the texts come back through read_texts, aligned with doc_id
    assert [t for _, t in read_texts(out, np.arange(n))] == corpus["texts"]


def test_fast_path_matches_a_plain_fp32_reference_in_input_order(oneshot, corpus):
    out, _ = oneshot
    x = EmbeddingStore(out).read(0, len(corpus["texts"]))
    ref = reference_embeddings(corpus["texts"])
    cos = np.sum(x * ref, axis=1)
    assert cos.min() > 1 - 1e-3, cos.min()


def test_token_budget_batches_and_buckets_by_length(encoder):
    lengths = np.array([5, 30, 12, 30, 7, 8, 31, 2])
    enc = Encoder.__new__(Encoder)
    enc.batch_tokens, enc.batch_size, enc.is_cuda = 64, None, False
    batches = enc.plan_batches(lengths)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * lengths[b].max() <= 64 or len(b) == 1
    flat = np.concatenate(batches)
    assert list(lengths[flat]) == sorted(lengths, reverse=True)  # longest first, little padding
    enc.batch_size = 2
    assert max(len(b) for b in enc.plan_batches(lengths)) == 2


def test_sequence_packing_matches_padded_batches(encoder, corpus):
    assert encoder.packing  # the CPU default for BERT-type models
    texts = corpus["texts"][:24] + ["x", "two words"]
    padded = Encoder(max_length=MAXLEN, device="cpu", pack=False)
    a, b = encoder.embed_texts(texts), padded.embed_texts(texts)
    assert np.sum(a * b, axis=1).min() > 1 - 1e-5
    lengths = np.array([32, 5, 30, 2, 16, 16, 1])
    row_len, rows = encoder.pack_rows(lengths)
    assert row_len == 32 and sorted(j for r in rows for j in r) == list(range(7))
    assert all(lengths[r].sum() <= 32 for r in rows) and len(rows) == 4


def test_same_inputs_give_byte_identical_outputs(tmp_path, oneshot, corpus, encoder):
    out, _ = oneshot
    again = tmp_path / "again"
    embed_corpus(corpus["inputs"], again, id_column="id", encoder=encoder, part_docs=PART, progress=False)
    assert dir_bytes(again) == dir_bytes(out)


def _interrupt_after(monkeypatch, n_parts: int):
    real = embedding._flush_part
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        if calls["n"] == n_parts:
            raise KeyboardInterrupt("simulated kill")
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(embedding, "_flush_part", flaky)


@pytest.mark.parametrize("lose_docs_part", [False, True])
def test_resume_after_interruption_gives_byte_identical_outputs(tmp_path, monkeypatch, oneshot, corpus, encoder,
                                                                lose_docs_part):
    out, _ = oneshot
    target = tmp_path / "emb"
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        embed_corpus(corpus["inputs"], target, id_column="id", encoder=encoder, part_docs=PART, progress=False)
    monkeypatch.undo()
    assert not (target / "manifest.json").exists()
    assert sorted(p.name for p in target.glob("embeddings-*.npy")) == ["embeddings-00000.npy", "embeddings-00001.npy"]
    if lose_docs_part:  # killed between writing a part's embeddings and its docs rows
        (target / ".parts" / "docs-00001.parquet").unlink()
    result = embed_corpus(corpus["inputs"], target, id_column="id", encoder=encoder, part_docs=PART, progress=False)
    assert result.state == "resume"
    assert result.embedded_docs == len(corpus["texts"]) - PART * (1 if lose_docs_part else 2)
    assert dir_bytes(target) == dir_bytes(out)
    assert embed_corpus(corpus["inputs"], target, id_column="id", encoder=encoder, part_docs=PART,
                        progress=False).state == "done"


def test_sharded_embed_then_merge_equals_one_shot(tmp_path, oneshot, corpus, encoder):
    out, manifest = oneshot
    shards = []
    for i in range(3):
        d = tmp_path / f"shard{i}"
        r = embed_corpus(corpus["inputs"], d, id_column="id", encoder=encoder, part_docs=PART, num_shards=3,
                         shard_index=i, shard_block=5, progress=False)
        assert 0 < r["statistics"]["n_docs"] < len(corpus["texts"])
        shards.append(d)
    merged = tmp_path / "merged"
    result = merge_embeddings(list(reversed(shards)), merged, progress=False)  # any order
    assert pq.read_table(merged / "docs.parquet").equals(pq.read_table(out / "docs.parquet"))
    assert (merged / "docs.parquet").read_bytes() == (out / "docs.parquet").read_bytes()
    a, b = EmbeddingStore(merged), EmbeddingStore(out)
    assert a.shape == b.shape and len(a.files) == len(b.files)
    np.testing.assert_allclose(a.read(0, a.n), b.read(0, b.n), atol=1e-5)
    st = result["statistics"]
    assert st["n_docs"] == manifest["statistics"]["n_docs"] and st["skipped_empty"] == 1
    assert st["tokens"] == manifest["statistics"]["tokens"]
    assert result["settings"]["num_shards"] == 1 and result["inputs"]["files"] == manifest["inputs"]["files"]
    assert [t for _, t in read_texts(merged, [0, 21, 40])] == [corpus["texts"][i] for i in (0, 21, 40)]
    assert merge_embeddings(shards, merged, progress=False).state == "done"

    with pytest.raises(InputError, match=r"shard\(s\) 1 of 3 missing"):
        merge_embeddings([shards[0], shards[2]], tmp_path / "m2", progress=False)
    with pytest.raises(MismatchError, match="given twice"):
        merge_embeddings([shards[0], shards[1], shards[1], shards[2]], tmp_path / "m3", progress=False)
    with pytest.raises(InputError, match="not a shard"):
        merge_embeddings([out], tmp_path / "m4", progress=False)
    other = tmp_path / "other"
    embed_corpus([corpus["inputs"][0]], other, id_column="id", encoder=encoder, part_docs=PART, num_shards=3,
                 shard_index=1, shard_block=5, progress=False)
    with pytest.raises(MismatchError, match="other input files"):
        merge_embeddings([shards[0], other, shards[2]], tmp_path / "m5", progress=False)
    short = Encoder(max_length=16, device="cpu")
    other2 = tmp_path / "other2"
    embed_corpus(corpus["inputs"], other2, id_column="id", encoder=short, part_docs=PART, num_shards=3,
                 shard_index=1, shard_block=5, progress=False)
    with pytest.raises(MismatchError, match="max_length"):
        merge_embeddings([shards[0], other2, shards[2]], tmp_path / "m6", progress=False)


# --------------------------------------------------------------------------- long documents
def test_prefix_tokenization_of_long_documents_is_exact(encoder):
    words = " ".join(f"word{i} unbelievable" for i in range(2000))
    cases = [
        words,                                        # ordinary long text: prefix is enough
        "x" * 5000 + " tail",                         # one giant word: falls back to the full text
        "a" + " " * 6000 + " ".join(["b"] * 100),     # mostly whitespace: falls back
        words[: encoder.clip_chars + 3],              # cut inside a word near the clip
    ]
    got = encoder.tokenize(cases)
    for text, chunks in zip(cases, got):
        full = encoder.tokenizer.encode(text).ids
        assert len(chunks) == 1 and chunks[0].tolist() == full


def test_chunk_mean_averages_all_tokens_of_a_long_document(small_docs):
    import torch

    enc = Encoder(max_length=16, device="cpu", long_docs="chunk-mean")
    long_text = " ".join(d["text"] for d in small_docs[:2])
    short_text = "A short document."
    x = enc.embed_texts([long_text, short_text])
    # reference: every window of 14 content tokens as its own [CLS] .. [SEP] sequence
    from transformers import AutoModel, AutoTokenizer

    path = embedding.default_model_path()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    ids = tok(long_text, add_special_tokens=False)["input_ids"]
    total, count = 0, 0
    with torch.no_grad():
        for i in range(0, len(ids), 14):
            seq = torch.tensor([[tok.cls_token_id] + ids[i : i + 14] + [tok.sep_token_id]])
            h = model(input_ids=seq).last_hidden_state[0]
            total, count = total + h.sum(0), count + h.shape[0]
    ref = torch.nn.functional.normalize(total / count, dim=0).numpy()
    assert float(x[0] @ ref) > 1 - 1e-4
    trunc = Encoder(max_length=16, device="cpu").embed_texts([short_text])
    np.testing.assert_allclose(x[1], trunc[0], atol=1e-5)


def test_output_directory_inside_an_input_directory_is_not_read_back(tmp_path, encoder):
    data = tmp_path / "data"
    write_jsonl(data / "a.jsonl", [{"text": f"document {i} on some topic"} for i in range(5)])
    first = embed_corpus([data], data / "emb", encoder=encoder, progress=False)
    assert first["statistics"]["n_docs"] == 5 and len(first["inputs"]["files"]) == 1
    assert embed_corpus([data], data / "emb", encoder=encoder, progress=False).state == "done"


def test_nan_embedding_names_the_document(tmp_path, corpus, encoder, monkeypatch):
    real = encoder.embed_tokens

    def broken(chunks):
        out = real(chunks)
        out[1] = np.nan
        return out

    monkeypatch.setattr(encoder, "embed_tokens", broken)
    with pytest.raises(InputError, match=r"a\.parquet, row 1: its embedding is NaN or zero"):
        embed_corpus(corpus["inputs"], tmp_path / "nan", encoder=encoder, progress=False)


# --------------------------------------------------------------------------- CLI
def cli(args):
    from clusterclip.cli import cli as group

    return CliRunner().invoke(group, [str(a) for a in args])


def test_cli_embed_with_dirs_and_globs_then_rerun_and_refuse_other_settings(tmp_path, corpus):
    out = tmp_path / "emb"
    root = corpus["root"]
    args = ["embed", root / "a.parquet", str(root / "more" / "**" / "*.jsonl.*"), "--out", out,
            "--max-length", MAXLEN, "--id-column", "id", "--part-docs", PART]
    r = cli(args)
    assert r.exit_code == 0, r.output
    n = len(corpus["texts"])
    assert f"embed: {n} docs, dim 384, 1 empty skipped" in r.output and "docs/s" in r.output
    assert pq.read_table(out / "docs.parquet").column("id").to_pylist() == corpus["ids"]
    r = cli(args)
    assert r.exit_code == 0 and "already done" in r.output
    r = cli(args[:-2] + ["--part-docs", 8])
    assert r.exit_code == 2 and "--overwrite" in r.output and "Traceback" not in r.output
    r = cli(args[:-2] + ["--part-docs", 8, "--overwrite"])
    assert r.exit_code == 0 and len(list(out.glob("embeddings-*.npy"))) == -(-n // 8)


def test_cli_shards_and_merge(tmp_path, corpus, oneshot):
    base = ["--max-length", MAXLEN, "--id-column", "id", "--part-docs", PART, "--num-shards", 2, "--shard-block", 7]
    for i in range(2):
        r = cli(["embed", *corpus["inputs"], "--out", tmp_path / f"s{i}", *base, "--shard-index", i])
        assert r.exit_code == 0 and f"shard {i}/2" in r.output, r.output
    r = cli(["merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "m"])
    assert r.exit_code == 0 and "from 2 shards" in r.output, r.output
    assert pq.read_table(tmp_path / "m" / "docs.parquet").equals(pq.read_table(oneshot[0] / "docs.parquet"))
    r = cli(["merge", tmp_path / "s0", "--out", tmp_path / "m2"])
    assert r.exit_code == 2 and "shard(s) 1 of 2 missing" in r.output


def _cli_bad_inputs(tmp_path: Path) -> dict:
    t = tmp_path
    good = [{"text": f"document {i} about things"} for i in range(5)]
    cases = {}
    cases["no text column"] = (write_jsonl(t / "a.jsonl", [{"body": "x"}]), [], "no field 'text' (fields: body)")
    cases["null text mid-file"] = (write_jsonl(t / "n.jsonl", good + [{"text": None}]), [], "n.jsonl, line 6: field 'text' is null")
    cases["wrong id column"] = (write_jsonl(t / "i.jsonl", good), ["--id-column", "uid"], "no field 'uid'")
    p = t / "m.jsonl"
    p.write_text('{"text": "ok"}\n{"text": \n')
    cases["malformed json"] = (p, [], "m.jsonl, line 2: malformed JSON")
    p = t / "u.jsonl"
    p.write_bytes(b'{"text": "ok"}\n{"text": "\xff\xfe"}\n')
    cases["invalid utf-8"] = (p, [], "u.jsonl, line 2: invalid UTF-8")
    p = t / "x.parquet"
    p.write_bytes(b"PAR1 not really parquet")
    cases["corrupt parquet"] = (p, [], "x.parquet: not a valid Parquet file")
    p = t / "notes.csv"
    p.write_text("text\nhello\n")
    cases["unknown extension"] = (p, [], "notes.csv: unsupported file type")
    cases["missing file"] = (t / "nope.jsonl", [], "nope.jsonl: no such file or directory")
    cases["all empty"] = (write_jsonl(t / "e.jsonl", [{"text": " "}, {"text": ""}]), [], "all 2 documents are empty")
    cases["bad shard index"] = (write_jsonl(t / "g.jsonl", good), ["--num-shards", 2, "--shard-index", 2], "")
    return cases


@pytest.mark.parametrize("case", ["no text column", "null text mid-file", "wrong id column", "malformed json",
                                  "invalid utf-8", "corrupt parquet", "unknown extension", "missing file",
                                  "all empty", "bad shard index"])
def test_cli_bad_input_is_one_line_error_without_traceback(tmp_path, case):
    path, extra, needle = _cli_bad_inputs(tmp_path)[case]
    r = cli(["embed", path, "--out", tmp_path / "out", "--max-length", MAXLEN, *extra])
    assert r.exit_code != 0, r.output
    assert "Traceback" not in r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    if case == "bad shard index":  # click's own usage error
        assert "--shard-index" in r.output
        return
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.output
