"""The ``embed`` step: artifacts, accuracy against a plain reference, precision, determinism, resume,
partitions + merge, long documents, and one-line errors through the CLI.

Kept fast: ~50 real documents (stdlib docstrings) at ``max_length`` 32, one model load shared by
the library tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from clusterclip.embed import EmbedDir, EmbedSettings, embed_corpus, merge_embeddings
from clusterclip.embed.batching import pack_rows, plan_batches
from clusterclip.embed.encoder import DEFAULT_MODEL_NAME, default_model_path
from clusterclip.embed.hf import HFEncoder
from clusterclip.embed.writer import EmbedWriter
from clusterclip.errors import InputError, MismatchError

from helpers import assert_one_line_error, invoke, tree_bytes, write_jsonl, write_parquet

MAXLEN = 32
PART = 16


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def encoder():
    return HFEncoder(max_length=MAXLEN, device="cpu", dtype="float32")


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
    expected = list(d[:20]) + [x for x in b_recs if x["text"].strip()] + d[34:]
    return {"root": root, "inputs": [a, root / "more"], "texts": [x["text"] for x in expected],
            "ids": [x["id"] for x in expected]}


def embed(corpus, out, encoder, **kw):
    kw.setdefault("part_docs", PART)
    return embed_corpus(corpus["inputs"], out, id_column="id", encoder=encoder, progress=False, **kw)


@pytest.fixture(scope="module")
def oneshot(tmp_path_factory, corpus, encoder):
    out = tmp_path_factory.mktemp("oneshot") / "emb"
    return out, embed(corpus, out, encoder).manifest


def reference_embeddings(texts, max_length=MAXLEN):
    """Plain fp32 Hugging Face model, one document at a time, masked mean pooling, L2 norm."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = default_model_path()
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
    emb = EmbedDir(out, verify=True)
    assert len(emb.parts) == -(-n // PART)
    x = emb.store().read(0, n)
    assert x.shape == (n, 384)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert sorted(p.name for p in out.iterdir()) == [".clusterclip", "docs.parquet"] + emb.parts + ["manifest.json"]
    assert not (out / ".clusterclip" / "build").exists()
    m = json.loads((out / "manifest.json").read_text())
    assert m["step"] == "embed" and m == manifest
    s, st, acct = m["settings"], m["statistics"], m["accounting"]
    assert (s["text_column"], s["id_column"], s["model"], s["max_length"]) == ("text", "id", DEFAULT_MODEL_NAME, MAXLEN)
    assert (st["n_docs"], st["dim"], st["skipped_empty"]) == (n, 384, 1) and st["tokens"] > n
    assert st["truncated_docs"] > 0  # docstrings are longer than 32 tokens
    assert acct["input_rows"] == acct["documents"] + acct["skipped"]["empty"] == n + 1 and acct["complete"]
    assert [Path(f["path"]).name for f in m["inputs"]["files"]] == ["a.parquet", "b.jsonl.gz", "c.jsonl.zst"]
    assert all(len(f["sha256"]) == 64 for f in m["inputs"]["files"])
    assert sorted(r["path"] for r in m["outputs"]) == ["docs.parquet"] + emb.parts
    # the texts come back, aligned with doc_id
    assert [t for _, t in emb.texts(np.arange(n))] == corpus["texts"]


@pytest.mark.slow
def test_fp32_path_matches_a_plain_reference_in_input_order(oneshot, corpus):
    out, _ = oneshot
    x = EmbedDir(out).store().read(0, len(corpus["texts"]))
    cos = np.sum(x * reference_embeddings(corpus["texts"]), axis=1)
    assert cos.min() > 1 - 1e-3, cos.min()


def test_bfloat16_stays_within_cosine_0_999_of_float32_for_every_document(corpus, encoder):
    bf16 = HFEncoder(max_length=MAXLEN, device="cpu", dtype="bfloat16")
    texts = corpus["texts"]
    cos = np.sum(bf16.embed_texts(texts) * encoder.embed_texts(texts), axis=1)
    assert cos.min() >= 0.999, cos.min()
    assert bf16.settings["dtype"] == "bfloat16"


def test_dtype_auto_is_bfloat16_exactly_where_the_cpu_has_native_bf16(monkeypatch):
    from clusterclip.embed import encoder as enc

    assert enc.resolve_dtype("auto", "cuda") == "float16"
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(enc, "cpu_has_native_bf16", lambda native=native: native)
        assert enc.resolve_dtype("auto", "cpu") == expected
    assert enc.resolve_dtype("float32", "cpu") == "float32"


def test_token_budget_batches_and_buckets_by_length():
    lengths = np.array([5, 30, 12, 30, 7, 8, 31, 2])
    batches = plan_batches(lengths, 64)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * lengths[b].max() <= 64 or len(b) == 1
    flat = np.concatenate(batches)
    assert list(lengths[flat]) == sorted(lengths, reverse=True)  # longest first, little padding
    assert max(len(b) for b in plan_batches(lengths, 64, batch_size=2)) == 2


def test_sequence_packing_matches_padded_batches(encoder, corpus):
    assert encoder.packing  # the CPU default for BERT-type models
    texts = corpus["texts"][:24] + ["x", "two words"]
    padded = HFEncoder(max_length=MAXLEN, device="cpu", dtype="float32", packing="off")
    a, b = encoder.embed_texts(texts), padded.embed_texts(texts)
    assert np.sum(a * b, axis=1).min() > 1 - 1e-5
    lengths = np.array([32, 5, 30, 2, 16, 16, 1])
    row_len, rows = pack_rows(lengths)
    assert row_len == 32 and sorted(j for r in rows for j in r) == list(range(7))
    assert all(lengths[r].sum() <= 32 for r in rows) and len(rows) == 4


def test_same_inputs_give_byte_identical_outputs(tmp_path, oneshot, corpus, encoder):
    out, _ = oneshot
    again = tmp_path / "again"
    embed(corpus, again, encoder)
    assert tree_bytes(again) == tree_bytes(out)


def _interrupt_after(monkeypatch, n_parts: int):
    real = EmbedWriter.write_part
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        if calls["n"] == n_parts:
            raise KeyboardInterrupt("simulated kill")
        calls["n"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(EmbedWriter, "write_part", flaky)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["none", "lose docs part", "corrupt part"])
def test_resume_after_interruption_gives_byte_identical_outputs(tmp_path, monkeypatch, oneshot, corpus, encoder,
                                                                damage):
    out, _ = oneshot
    target = tmp_path / "emb"
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        embed(corpus, target, encoder)
    monkeypatch.undo()
    build = target / ".clusterclip" / "build"
    assert not (target / "manifest.json").exists()
    assert sorted(p.name for p in build.glob("embeddings-*.npy")) == ["embeddings-00000.npy", "embeddings-00001.npy"]
    if damage == "lose docs part":  # killed between writing a part's embeddings and its docs rows
        (build / ".parts" / "docs-00001.parquet").unlink()
    elif damage == "corrupt part":  # a kept part whose bytes changed: re-hashed on resume, redone
        data = bytearray((build / "embeddings-00001.npy").read_bytes())
        data[-5] ^= 0xFF
        (build / "embeddings-00001.npy").write_bytes(bytes(data))
    result = embed(corpus, target, encoder)
    assert result.state == "resume"
    assert result.processed == len(corpus["texts"]) - PART * (2 if damage == "none" else 1)
    assert tree_bytes(target) == tree_bytes(out)
    assert embed(corpus, target, encoder).state == "done"


@pytest.mark.slow
def test_partitions_then_merge_equal_one_shot(tmp_path, oneshot, corpus, encoder):
    out, manifest = oneshot
    same_block = tmp_path / "one-shot-block-5"  # the batching windows are cut at --partition-block
    embed(corpus, same_block, encoder, partition_block=5)
    parts = []
    for i in range(3):
        d = tmp_path / f"part{i}"
        r = embed(corpus, d, encoder, num_partitions=3, partition_index=i, partition_block=5)
        assert 0 < r.statistics["n_docs"] < len(corpus["texts"])
        parts.append(d)
    merged = tmp_path / "merged"
    result = merge_embeddings(list(reversed(parts)), merged, progress=False)  # any order
    assert (merged / "docs.parquet").read_bytes() == (out / "docs.parquet").read_bytes()
    a, b = EmbedDir(merged).store(), EmbedDir(same_block).store()
    assert a.shape == b.shape and len(a.files) == len(b.files)
    np.testing.assert_array_equal(a.read(0, a.n), b.read(0, b.n))
    st = result.statistics
    assert st["n_docs"] == manifest["statistics"]["n_docs"] and st["skipped_empty"] == 1
    assert st["tokens"] == manifest["statistics"]["tokens"]
    assert result.settings["num_partitions"] == 1 and result.manifest["inputs"]["files"] == manifest["inputs"]["files"]
    texts = corpus["texts"]
    assert [t for _, t in EmbedDir(merged).texts([0, 21, 40])] == [texts[i] for i in (0, 21, 40)]
    assert merge_embeddings(parts, merged, progress=False).state == "done"

    with pytest.raises(InputError, match=r"partition\(s\) 1 of 3 missing"):
        merge_embeddings([parts[0], parts[2]], tmp_path / "m2", progress=False)
    with pytest.raises(MismatchError, match="given twice"):
        merge_embeddings([parts[0], parts[1], parts[1], parts[2]], tmp_path / "m3", progress=False)
    with pytest.raises(InputError, match="not a partition"):
        merge_embeddings([out], tmp_path / "m4", progress=False)
    other = tmp_path / "other"
    embed_corpus([corpus["inputs"][0]], other, id_column="id", encoder=encoder, part_docs=PART, num_partitions=3,
                 partition_index=1, partition_block=5, progress=False)
    with pytest.raises(MismatchError, match="other input files"):
        merge_embeddings([parts[0], other, parts[2]], tmp_path / "m5", progress=False)
    short = HFEncoder(max_length=16, device="cpu", dtype="float32")
    other2 = tmp_path / "other2"
    embed(corpus, other2, short, num_partitions=3, partition_index=1, partition_block=5)
    with pytest.raises(MismatchError, match="max_length"):
        merge_embeddings([parts[0], other2, parts[2]], tmp_path / "m6", progress=False)


def test_a_given_encoder_must_agree_with_explicit_settings(tmp_path, corpus, encoder):
    with pytest.raises(InputError, match="max_length"):
        embed_corpus(corpus["inputs"], tmp_path / "e", encoder=encoder, max_length=64, progress=False)
    with pytest.raises(InputError, match="not both"):
        embed_corpus(corpus["inputs"], tmp_path / "e", EmbedSettings(), encoder=encoder, max_length=64)


# --------------------------------------------------------------------------- long documents
def test_prefix_tokenization_of_long_documents_is_exact(encoder):
    words = " ".join(f"word{i} unbelievable" for i in range(2000))
    cases = [
        words,                                        # ordinary long text: the prefix is enough
        "x" * 5000 + " tail",                         # one giant word: a longer prefix is needed
        "a" + " " * 6000 + " ".join(["b"] * 100),     # mostly whitespace
        words[: encoder.clip_chars + 3],              # cut inside a word near the clip
    ]
    prepared = encoder.prepare(cases)
    full = [encoder.tokenizer.encode(text) for text in cases]
    for chunks, enc in zip(prepared.items, full):
        assert len(chunks) == 1 and chunks[0].tolist() == enc.ids
    assert prepared.truncated == sum(1 for enc in full if enc.overflowing) == 3  # the giant word is one [UNK]
    assert prepared.tokens == [len(enc.ids) for enc in full]


@pytest.mark.slow
def test_chunk_mean_averages_all_tokens_of_a_long_document(small_docs):
    import torch
    from transformers import AutoModel, AutoTokenizer

    enc = HFEncoder(max_length=16, device="cpu", dtype="float32", long_docs="chunk-mean")
    long_text = " ".join(d["text"] for d in small_docs[:2])
    short_text = "A short document."
    x = enc.embed_texts([long_text, short_text])
    # reference: every window of 14 content tokens as its own [CLS] .. [SEP] sequence
    path = default_model_path()
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
    trunc = HFEncoder(max_length=16, device="cpu", dtype="float32").embed_texts([short_text])
    np.testing.assert_allclose(x[1], trunc[0], atol=1e-5)


def test_output_directory_inside_an_input_directory_is_not_read_back(tmp_path, encoder):
    data = tmp_path / "data"
    write_jsonl(data / "a.jsonl", [{"text": f"document {i} on some topic"} for i in range(5)])
    first = embed_corpus([data], data / "emb", encoder=encoder, progress=False)
    assert first.statistics["n_docs"] == 5 and len(first.manifest["inputs"]["files"]) == 1
    assert embed_corpus([data], data / "emb", encoder=encoder, progress=False).state == "done"


def test_nan_embedding_names_the_document(tmp_path, corpus, encoder, monkeypatch):
    real = encoder.embed

    def broken(prepared, on_progress=None):
        out = real(prepared, on_progress)
        out[1] = np.nan
        return out

    monkeypatch.setattr(encoder, "embed", broken)
    with pytest.raises(InputError, match=r"a\.parquet, row 1: its embedding is NaN or zero"):
        embed_corpus(corpus["inputs"], tmp_path / "nan", encoder=encoder, progress=False)


# --------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_embed_with_dirs_and_globs_then_rerun_and_refuse_other_settings(tmp_path, corpus):
    out = tmp_path / "emb"
    root = corpus["root"]
    args = ["embed", root / "a.parquet", str(root / "more" / "**" / "*.jsonl.*"), "--out", out,
            "--max-length", MAXLEN, "--id-column", "id", "--part-docs", PART]
    code, output = invoke(args)
    assert code == 0, output
    n = len(corpus["texts"])
    assert f"embed: {n} docs, dim 384, 1 empty skipped" in output and "docs/s" in output and "truncated" in output
    assert pq.read_table(out / "docs.parquet").column("id").to_pylist() == corpus["ids"]
    code, output = invoke(args)
    assert code == 0 and "already done" in output
    code, output = invoke(args[:-2] + ["--part-docs", 8])
    assert_one_line_error(code, output, "--overwrite", "part_docs 16 -> 8")
    code, output = invoke(args[:-2] + ["--part-docs", 8, "--overwrite"])
    assert code == 0 and len(list(out.glob("embeddings-*.npy"))) == -(-n // 8)


@pytest.mark.slow
def test_a_failed_merge_leaves_no_build_behind(tmp_path, corpus, encoder):
    from clusterclip.errors import IntegrityError

    parts = [tmp_path / f"part{i}" for i in range(2)]
    for i, d in enumerate(parts):
        embed(corpus, d, encoder, num_partitions=2, partition_index=i, partition_block=5)
    part = parts[1] / "embeddings-00000.npy"
    data = bytearray(part.read_bytes())
    data[-3] ^= 0x55  # same size: found by its sha256, once merge is under way
    part.write_bytes(bytes(data))
    merged = tmp_path / "merged"
    with pytest.raises(IntegrityError, match="embeddings-00000.npy"):
        merge_embeddings(parts, merged, progress=False)
    assert not (merged / ".clusterclip" / "build").exists() and not (merged / "manifest.json").exists()


@pytest.mark.slow
def test_cli_partitions_and_merge(tmp_path, corpus, oneshot):
    base = ["--max-length", MAXLEN, "--id-column", "id", "--part-docs", PART, "--dtype", "float32",
            "--num-partitions", 2, "--partition-block", 7]
    for i in range(2):
        code, output = invoke(["embed", *corpus["inputs"], "--out", tmp_path / f"s{i}", *base, "--partition-index", i])
        assert code == 0 and f"partition {i}/2" in output, output
    code, output = invoke(["merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "m"])
    assert code == 0 and "from 2 partitions" in output, output
    assert (tmp_path / "m" / "docs.parquet").read_bytes() == (oneshot[0] / "docs.parquet").read_bytes()
    code, output = invoke(["merge", tmp_path / "s0", "--out", tmp_path / "m2"])
    assert_one_line_error(code, output, "partition(s) 1 of 2 missing")
    # a one-shot run with the same settings: the same embedding bytes; merging onto it is refused in words
    one = tmp_path / "one"
    code, output = invoke(["embed", *corpus["inputs"], "--out", one, *base[:-4], "--partition-block", 7])
    assert code == 0, output
    for name in ["docs.parquet"] + sorted(p.name for p in one.glob("embeddings-*.npy")):
        assert (tmp_path / "m" / name).read_bytes() == (one / name).read_bytes(), name
    code, output = invoke(["merge", tmp_path / "s0", tmp_path / "s1", "--out", one])
    line = assert_one_line_error(code, output, "embedded from the corpus in one run and this run merges 2 partitions",
                                 "--overwrite", "another --out")
    assert "manifest_sha256" not in line and "[0]" not in line and "None" not in line, line
    # the old flag names still work
    code, output = invoke(["embed", *corpus["inputs"], "--out", tmp_path / "old", "--max-length", MAXLEN,
                           "--num-shards", 2, "--shard-index", 1, "--limit", 3])
    assert code == 0 and "partition 1/2" in output and "(--limit 3)" in output, output


def test_a_missing_gpu_is_refused_before_torch_loads(tmp_path):
    """``--device cuda``/``cuda:N`` where CUDA shows no GPU: one line, and torch is never imported (it took 12 s)."""
    import os
    import subprocess
    import sys

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"text": "a document"}])
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "CLUSTERCLIP_NO_PROGRESS": "1"}
    for device in ("cuda", "cuda:1"):
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "clusterclip", "embed", str(corpus), "--out",
                            str(tmp_path / "e"), "--device", device], capture_output=True, text=True, env=env,
                           timeout=120, check=False)
        imports = [line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")]
        assert imports and "torch" not in imports and "transformers" not in imports
        rest = "\n".join(line for line in r.stderr.splitlines() if not line.startswith("import time:"))
        assert_one_line_error(r.returncode, r.stdout + rest, f"--device {device}", "--device cpu")
    assert not (tmp_path / "e").exists()


def _cli_bad_inputs(tmp_path: Path) -> dict:
    t = tmp_path
    good = [{"text": f"document {i} about things"} for i in range(5)]
    cases = {}
    cases["no text column"] = (write_jsonl(t / "a.jsonl", [{"body": "x"}]), [], "no field 'text' (fields: body)")
    cases["null text mid-file"] = (write_jsonl(t / "n.jsonl", good + [{"text": None}]), [],
                                   "n.jsonl, line 6: field 'text' is null")
    cases["wrong id column"] = (write_jsonl(t / "i.jsonl", good), ["--id-column", "uid"], "no field 'uid'")
    p = t / "m.jsonl"
    p.write_text('{"text": "ok"}\n{"text": \n')
    cases["malformed json"] = (p, [], "m.jsonl, line 2: malformed JSON")
    p = t / "u.jsonl"
    p.write_bytes(b'{"text": "ok"}\n{"text": "\xff\xfe"}\n')
    cases["invalid utf-8"] = (p, [], "u.jsonl, line 2: invalid UTF-8")
    p = t / "s.jsonl"
    p.write_text('{"text": "ok"}\n{"text": "half a pair \\ud800 here"}\n')
    cases["lone surrogate"] = (p, [], "s.jsonl, line 2: holds a lone surrogate")
    p = t / "x.parquet"
    p.write_bytes(b"PAR1 not really parquet")
    cases["corrupt parquet"] = (p, [], "x.parquet: not a valid Parquet file")
    p = t / "notes.csv"
    p.write_text("text\nhello\n")
    cases["unknown extension"] = (p, [], "notes.csv: unsupported file type")
    cases["missing file"] = (t / "nope.jsonl", [], "nope.jsonl: no such file or directory")
    cases["all empty"] = (write_jsonl(t / "e.jsonl", [{"text": " "}, {"text": ""}]), [], "all 2 documents are empty")
    cases["bad partition index"] = (write_jsonl(t / "g.jsonl", good), ["--num-partitions", 2, "--partition-index", 2],
                                    "--partition-index 2: must be below --num-partitions 2")
    cases["remote input"] = ("s3://bucket/corpus.jsonl", [], "s3://bucket/corpus.jsonl: remote inputs")
    cases["reserved id column"] = (write_jsonl(t / "r.jsonl", good), ["--id-column", "row"], "--id-column 'row'")
    return cases


@pytest.mark.parametrize("case", ["no text column", "null text mid-file", "wrong id column", "malformed json",
                                  "invalid utf-8", "lone surrogate", "corrupt parquet", "unknown extension",
                                  "missing file", "all empty", "bad partition index", "remote input",
                                  "reserved id column"])
def test_cli_bad_input_is_one_line_error_without_traceback(tmp_path, case):
    path, extra, needle = _cli_bad_inputs(tmp_path)[case]
    code, output = invoke(["embed", path, "--out", tmp_path / "out", "--max-length", MAXLEN, *extra])
    assert_one_line_error(code, output, needle)
    assert [line for line in output.splitlines() if line.strip()] == [output.strip()]
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_unsupported_files_in_an_input_directory_are_listed(tmp_path, encoder):
    data = tmp_path / "data"
    write_jsonl(data / "a.jsonl", [{"text": "one document"}, {"text": "another"}])
    (data / "notes.txt").write_text("not a corpus file")
    (data / "table.csv").write_text("text\nx\n")
    notes = []
    embed_corpus([data], tmp_path / "emb", encoder=encoder, progress=False, log=notes.append)
    assert any("skipped 2 file(s) of other types" in n and "notes.txt" in n and "table.csv" in n for n in notes), notes


# --------------------------------------------------------------------------- a second encoder backend
@pytest.mark.slow
def test_sentence_transformers_backend_agrees_with_the_hf_encoder(tmp_path, corpus, encoder):
    """The same model through its sentence-transformers config (mean pooling + Normalize for MiniLM)."""
    out = tmp_path / "st"
    result = embed_corpus(corpus["inputs"], out, backend="sentence-transformers", max_length=MAXLEN, dtype="float32",
                          part_docs=PART, progress=False)
    s = result.settings
    assert s["backend"] == "sentence-transformers" and "Pooling" in s["modules"] and "Normalize" in s["modules"]
    x = EmbedDir(out).store().read(0, len(corpus["texts"]))
    cos = np.sum(x * encoder.embed_texts(corpus["texts"]), axis=1)
    assert cos.min() > 1 - 1e-4, cos.min()
    code, output = invoke(["embed", corpus["inputs"][0], "--out", tmp_path / "bad", "--encoder", "sentence-transformers",
                           "--long-docs", "chunk-mean"])
    assert_one_line_error(code, output, "--long-docs", "only the hf encoder")
    code, output = invoke(["embed", corpus["inputs"][0], "--out", tmp_path / "bad", "--encoder", "sentence-transformers",
                           "--prompt-name", "no-such-prompt"])
    assert_one_line_error(code, output, "--prompt-name no-such-prompt", "not a prompt")


# --------------------------------------------------------------------------- bounded resources
@pytest.mark.slow
def test_one_huge_document_costs_bounded_memory(tmp_path):
    """A 50 MB document (one line, few spaces): embed reads a bounded prefix of it, not all of it."""
    import subprocess
    import sys

    big = tmp_path / "big.jsonl"
    word = "lorem" * 20 + " "
    write_jsonl(big, [{"text": "a normal document"}, {"text": word * (50_000_000 // len(word))}])
    script = (
        "from clusterclip.embed import embed_corpus\n"
        f"r = embed_corpus([{str(big)!r}], {str(tmp_path / 'emb')!r}, max_length=64, progress=False)\n"
        "assert r.statistics['n_docs'] == 2\n"
        # VmHWM: this address space's peak (ru_maxrss would carry the parent's size across fork + exec)
        "print(next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM')) // 1024)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stdout.split()[-1])
    # the process holds the 50 MB text (twice: JSON line and str) plus torch; before the bound it took > 5 GB
    assert peak_mib < 1500, peak_mib


def test_chunk_mean_tokenizes_a_huge_document_in_bounded_pieces():
    from clusterclip.embed.batching import split_text
    from clusterclip.embed.hf import PIECE_CHARS

    text = ("word " * 1000 + "x" * 70_000 + " ") * 30
    pieces = split_text(text, PIECE_CHARS)
    assert "".join(pieces) == text
    assert max(len(p) for p in pieces) <= PIECE_CHARS and all(pieces)
