"""The static encoder (``--encoder model2vec``) and ``clusterclip distill``.

- ``distill`` writes a model2vec directory that the ``model2vec`` package loads, with a manifest
  that ``verify`` checks; each token's vector is the encoder's mean over ``[CLS] t [SEP]``, then
  PCA (a rotation: distances kept at full dimension) and SIF;
- the encoder equals ``model2vec.StaticModel``'s own mean (property over documents and
  ``--max-length``), and goes through the embed pipeline like every encoder: partitions + merge,
  ``--part-docs``, resume, ``--incremental`` and Ray give the one-shot bytes.

Fast: a tiny randomly initialised BERT (real transformers class, the real all-MiniLM-L6-v2
tokenizer) is distilled in a few seconds; the default model's distillation into the cache is slow.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterclip.embed import EmbedDir, embed_corpus, merge_embeddings
from clusterclip.embed.distill import DistillSettings, distill_static_model, pca_fit_transform, sif_weights
from clusterclip.embed.encoder import default_model_path
from clusterclip.embed.model2vec import CACHE_ENV, DEFAULT_STATIC_NAME, StaticEncoder, default_static_path
from clusterclip.embed.writer import EmbedWriter
from clusterclip.errors import MismatchError

from helpers import assert_one_line_error, invoke, run_cli, stdlib_docs, tree_bytes, write_jsonl, write_parquet

TINY_PCA = 16


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BertModel (seeded random weights) with all-MiniLM-L6-v2's tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    src = default_model_path()
    dst = tmp_path_factory.mktemp("tiny-bert")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (src / name).exists():
            shutil.copy(src / name, dst / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory, tiny_bert) -> Path:
    out = tmp_path_factory.mktemp("static") / "m2v"
    distill_static_model(out, model=str(tiny_bert), pca_dims=TINY_PCA, progress=False)
    return out


@pytest.fixture(scope="module")
def static(static_dir) -> StaticEncoder:
    return StaticEncoder(str(static_dir), max_length=24)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("m2v-corpus")
    docs = stdlib_docs(45)
    write_jsonl(root / "c" / "a.jsonl", docs[:17] + [{"text": "  ", "id": "blank"}] + docs[17:22])
    write_parquet(root / "c" / "b.parquet", {"text": [d["text"] for d in docs[22:]], "id": [d["id"] for d in docs[22:]]},
                  row_group_size=5)
    return {"root": root / "c", "texts": [d["text"] for d in docs]}


# --------------------------------------------------------------------------- distill
def test_distill_writes_a_verified_model2vec_directory(static_dir, tiny_bert, tmp_path, corpus):
    from model2vec import StaticModel

    manifest = json.loads((static_dir / "manifest.json").read_text())
    assert manifest["step"] == "distill"
    st_ = manifest["statistics"]
    assert st_["vocab_size"] == 30522 and st_["distilled_tokens"] == 30522 - 994 and st_["dim"] == TINY_PCA
    assert {r["path"] for r in manifest["inputs"]["files"]} >= {"config.json", "model.safetensors", "tokenizer.json"}
    code, output = invoke(["verify", static_dir])
    assert code == 0 and "ok (distill, 3 files checked)" in output
    model = StaticModel.from_pretrained(static_dir, force_download=False)
    assert model.embedding.shape == (30522, TINY_PCA) and model.normalize
    # rerun: done; other settings: refused without --overwrite
    assert distill_static_model(static_dir, model=str(tiny_bert), pca_dims=TINY_PCA, progress=False).state == "done"
    with pytest.raises(MismatchError):
        distill_static_model(static_dir, model=str(tiny_bert), pca_dims=8, progress=False)
    # a damaged file is refused in one line before the model is used
    damaged = tmp_path / "damaged"
    shutil.copytree(static_dir, damaged)
    data = bytearray((damaged / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (damaged / "model.safetensors").write_bytes(bytes(data))
    code, output = invoke(["embed", corpus["root"], "--out", tmp_path / "e", "--encoder", "model2vec", "--model", damaged])
    assert_one_line_error(code, output, "model.safetensors")


@pytest.mark.slow
def test_distilled_vectors_are_the_encoders_mean_over_cls_token_sep(tiny_bert, tmp_path):
    """No PCA, no SIF: a token's vector is the plain masked mean of BertModel over [CLS] t [SEP]."""
    import torch
    from transformers import AutoModel

    out = tmp_path / "plain"
    distill_static_model(out, model=str(tiny_bert), pca_dims=0, sif_coefficient=0.0, progress=False)
    from model2vec import StaticModel

    vectors = StaticModel.from_pretrained(out, force_download=False).embedding
    model = AutoModel.from_pretrained(tiny_bert, attn_implementation="eager").eval()
    ids = [1996, 2003, 7592, 29612, 100, 1010]  # the, is, hello, a rare one, [UNK], a comma
    with torch.no_grad():
        x = torch.tensor([[101, t, 102] for t in ids])
        hidden = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state.mean(dim=1).numpy()
    np.testing.assert_allclose(vectors[ids], hidden, rtol=1e-4, atol=1e-5)
    assert not vectors[1:99].any()  # [unused0..97]: left out, zero (never produced by the tokenizer)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 40), d=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_pca_at_full_dimension_is_a_rotation_with_the_sign_rule(n, d, seed):
    x = np.random.default_rng(seed).standard_normal((n, d)) * np.arange(1, d + 1)
    mean, components, explained = pca_fit_transform(x, d)
    scores = (x - mean) @ components
    np.testing.assert_allclose(components.T @ components, np.eye(d), atol=1e-8)
    dist = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dist(scores), dist(x), atol=1e-8)
    assert explained == pytest.approx(1.0)
    top = scores[np.argmax(np.abs(scores), axis=0), np.arange(d)]
    assert (top >= 0).all()  # model2vec's sign rule: each component's largest score is positive
    w = sif_weights(n, 1e-4)
    assert (np.diff(w) >= 0).all() and (w < 1).all() and (sif_weights(n, 0.0) == 1).all()


def test_distill_settings_are_validated():
    from clusterclip.errors import InputError

    with pytest.raises(InputError, match="--pca-dims"):
        DistillSettings(pca_dims=-1)
    with pytest.raises(InputError, match="--sif-coefficient"):
        DistillSettings(sif_coefficient=2.0)


# --------------------------------------------------------------------------- the encoder
def _reference(model, texts, max_length):
    """model2vec's own tokens and vectors: the mean of the first ``max_length`` non-[UNK] tokens, L2-normalised."""
    model.tokenizer.no_truncation()  # model2vec loads it truncating at 512 tokens
    out = []
    for t in texts:
        ids = model.tokenizer.encode(t, add_special_tokens=False).ids[:max_length]
        known = [i for i in ids if i != model.unk_token_id] or ids
        v = np.asarray(model.embedding, dtype=np.float64)[known].mean(axis=0)
        out.append(v / np.linalg.norm(v))
    return np.asarray(out)


DOCS = [d["text"] for d in stdlib_docs(120)]


@functools.cache
def _model2vec(path: Path):
    from model2vec import StaticModel

    return StaticModel.from_pretrained(path, force_download=False)


@functools.cache
def _encoder(path: Path, max_length: int) -> StaticEncoder:
    return StaticEncoder(str(path), max_length=max_length)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(0, 100), n=st.integers(1, 20), max_length=st.sampled_from([1, 2, 7, 64, 255, 256, 4096]),
       repeat=st.integers(1, 40))
def test_static_vectors_equal_model2vec_s_mean(static_dir, start, n, max_length, repeat):
    model = _model2vec(static_dir)
    texts = [t * repeat for t in DOCS[start : start + n]]  # long documents too: the prefix tokenization is exact
    enc = _encoder(static_dir, max_length)
    prepared = enc.prepare(texts)
    got = enc.embed(prepared)
    assert (np.sum(got * _reference(model, texts, max_length), axis=1) >= 0.99999).all()
    full = [len(model.tokenizer.encode(t, add_special_tokens=False).ids) for t in texts]
    assert prepared.truncated_flags == [f > max_length for f in full]
    if max_length == 4096 and repeat == 1:  # no document is cut: model2vec's encode itself
        x = model.encode(texts, max_length=None)
        np.testing.assert_allclose(got, x / np.linalg.norm(x, axis=1, keepdims=True), atol=1e-5)


def test_chunk_mean_is_the_mean_over_every_token(static_dir):
    from model2vec import StaticModel

    model = StaticModel.from_pretrained(static_dir, force_download=False)
    texts = ["\n".join(DOCS) * 3, DOCS[5]]
    enc = StaticEncoder(str(static_dir), max_length=16, long_docs="chunk-mean")
    got = enc.embed(enc.prepare(texts))
    assert (np.sum(got * _reference(model, texts, 10**9), axis=1) >= 0.99999).all()


def test_a_document_of_unknown_tokens_only_gets_the_unknown_vector(static):
    x = static.embed_texts(["\u2603\u2603", "plain words"])
    assert np.isfinite(x).all() and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)


# --------------------------------------------------------------------------- the embed pipeline
def _embed(corpus, out, static_dir, **kw):
    kw.setdefault("part_docs", 7)
    return embed_corpus([corpus["root"]], out, backend="model2vec", model=str(static_dir), max_length=24,
                        id_column="id", progress=False, **kw)


def test_partitions_parts_and_resume_give_the_one_shot_bytes(tmp_path, corpus, static_dir, monkeypatch):
    one = tmp_path / "one"
    result = _embed(corpus, one, static_dir)
    s = result.settings
    assert s["backend"] == "model2vec" and s["model"] == str(static_dir.resolve()) and len(s["model_sha256"]) == 64
    assert result.statistics["n_docs"] == 45 and result.statistics["skipped_empty"] == 1
    vectors = EmbedDir(one).store().read(0, 45)
    np.testing.assert_allclose(vectors, StaticEncoder(str(static_dir), max_length=24).embed_texts(corpus["texts"]))
    other_parts = tmp_path / "parts"
    _embed(corpus, other_parts, static_dir, part_docs=11)
    np.testing.assert_array_equal(EmbedDir(other_parts).store().read(0, 45), vectors)
    parts = [tmp_path / f"p{i}" for i in range(3)]
    for i, p in enumerate(parts):
        _embed(corpus, p, static_dir, num_partitions=3, partition_index=i, partition_block=4)
    merge_embeddings(parts, tmp_path / "merged", progress=False)
    assert (tmp_path / "merged" / "docs.parquet").read_bytes() == (one / "docs.parquet").read_bytes()
    np.testing.assert_array_equal(EmbedDir(tmp_path / "merged").store().read(0, 45), vectors)
    real, calls = EmbedWriter.write_part, {"n": 0}

    def flaky(self, *args, **kwargs):
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        calls["n"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(EmbedWriter, "write_part", flaky)
    with pytest.raises(KeyboardInterrupt):
        _embed(corpus, tmp_path / "resumed", static_dir)
    monkeypatch.undo()
    assert _embed(corpus, tmp_path / "resumed", static_dir).state == "resume"
    assert tree_bytes(tmp_path / "resumed") == tree_bytes(one)


def test_cli_incremental_reuses_the_unchanged_file(tmp_path, corpus, static_dir):
    work = tmp_path / "c"
    shutil.copytree(corpus["root"], work)
    args = ["--encoder", "model2vec", "--model", static_dir, "--max-length", 24, "--id-column", "id"]
    run_cli(["embed", work, "--out", tmp_path / "inc", *args])
    write_jsonl(work / "new.jsonl", [{"text": "a new document about sockets", "id": "new"}])
    out = run_cli(["embed", work, "--out", tmp_path / "inc", *args, "--incremental"]).output
    assert "incremental: 1 files embedded, 2 reused" in out
    run_cli(["embed", work, "--out", tmp_path / "scratch", *args])
    inc, scratch = tree_bytes(tmp_path / "inc"), tree_bytes(tmp_path / "scratch")
    assert sorted(inc) == sorted(scratch)
    assert all(inc[name] == scratch[name] for name in inc if name != "manifest.json")
    m_inc, m_scratch = EmbedDir(tmp_path / "inc").manifest, EmbedDir(tmp_path / "scratch").manifest
    for key in ("settings", "statistics", "accounting", "outputs", "inputs", "per_file"):
        assert m_inc[key] == m_scratch[key], key


@pytest.mark.parametrize("args, needles", [
    (["--model", "{tmp}"], ("--model", "not a model2vec model directory", "clusterclip distill")),
    (["--packing", "on"], ("--packing", "only the hf encoder")),
    (["--prompt-name", "query"], ("--prompt-name",)),
])
def test_bad_model2vec_options_are_one_line_errors(tmp_path, corpus, args, needles):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, output = invoke(["embed", corpus["root"], "--out", tmp_path / "e", "--encoder", "model2vec", *args])
    assert_one_line_error(code, output, *needles)


# --------------------------------------------------------------------------- the default static model
@pytest.mark.slow
def test_the_default_static_model_is_distilled_once_into_the_cache(tmp_path, corpus, monkeypatch):
    from model2vec import StaticModel

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path = default_static_path()
    assert path == tmp_path / "cache" / "static" / "all-MiniLM-L6-v2"
    run_cli(["embed", corpus["root"], "--out", tmp_path / "e1", "--encoder", "model2vec"])
    assert (path / "manifest.json").is_file()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    run_cli(["embed", corpus["root"], "--out", tmp_path / "e2", "--encoder", "model2vec", "--max-length", 64])
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # distilled once
    manifest = EmbedDir(tmp_path / "e1").manifest
    assert manifest["settings"]["model"] == DEFAULT_STATIC_NAME and manifest["settings"]["backend"] == "model2vec"
    assert json.loads((path / "manifest.json").read_text())["statistics"]["dim"] == 256
    model = StaticModel.from_pretrained(path, force_download=False)
    got = EmbedDir(tmp_path / "e1").store().read(0, 45)
    assert (np.sum(got * _reference(model, corpus["texts"], 256), axis=1) >= 0.99999).all()


@pytest.mark.slow
def test_ray_engine_gives_the_local_bytes(tmp_path, corpus, static_dir):
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20, log_to_driver=False)
    try:
        args = ["--encoder", "model2vec", "--model", static_dir, "--max-length", 24, "--id-column", "id",
                "--part-docs", 9]
        run_cli(["embed", corpus["root"], "--out", tmp_path / "local", *args])
        run_cli(["embed", corpus["root"], "--out", tmp_path / "ray", *args, "--engine", "ray"])
    finally:
        ray.shutdown()
    local, on_ray = tree_bytes(tmp_path / "local"), tree_bytes(tmp_path / "ray")
    assert sorted(local) == sorted(on_ray)
    for name in local:
        if name != "manifest.json":
            assert local[name] == on_ray[name], name


@pytest.mark.slow
def test_the_report_says_which_encoder_made_the_clusters(tmp_path, corpus, static_dir):
    args = ["--encoder", "model2vec", "--model", static_dir, "--max-length", 24]
    run_cli(["embed", corpus["root"], "--out", tmp_path / "emb", *args])
    run_cli(["cluster", tmp_path / "emb", "--out", tmp_path / "cl", "--k", 3, "--seed", 0])
    run_cli(["report", tmp_path / "emb", tmp_path / "cl", "--out", tmp_path / "report"])
    page = (tmp_path / "report" / "index.html").read_text("utf-8")
    assert f"(encoder model2vec, model {static_dir.resolve()})" in page
