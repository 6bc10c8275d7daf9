"""Document delimiters (``--bos-token``, ``--eos-token TOKEN|none``, ``--convention``) and the
``schedule`` options that reach the shard writer (``--align-tokens``, ``--pack``): validated as
special tokens, counted the same way by the budget, the shards, ``shards.json`` and ``inspect``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clusterclip.errors import InputError
from clusterclip.shards import read_index, read_sample, read_stream, verify_shards
from clusterclip.tokens.tokenizer import load_tokenizer

from helpers import assert_one_line_error, invoke, run_cli
from shards_testlib import big_vocab_tokenizer, stdlib_docstrings, train_tokenizer


@pytest.fixture(scope="module")
def tok_file(tmp_path_factory):
    texts = stdlib_docstrings(150)
    root = tmp_path_factory.mktemp("delims")
    path = train_tokenizer(root / "tokenizer.json", texts, extra_special=2)  # + <|pad_0|>, <|pad_1|>
    return path


def _tok(tok_file, **kw):
    t = load_tokenizer(str(tok_file), require_eos=False)
    t.set_delimiters(**kw)
    return t


def test_defaults_and_none(tok_file):
    t = _tok(tok_file)
    assert t.eos_token == "<|endoftext|>" and t.bos_id is None
    t = _tok(tok_file, eos_token="none", bos_token="<|pad_0|>")
    assert t.eos_id is None and t.bos_token == "<|pad_0|>"
    d = t.describe()
    assert d["bos_id"] == t.bos_id and d["eos_id"] is None


def test_an_ordinary_word_is_refused_unless_allowed(tok_file):
    t = load_tokenizer(str(tok_file), require_eos=False)
    word = next(w for w in t._vocab() if w.isalpha() and len(w) > 3)
    for opt in ("eos_token", "bos_token"):
        with pytest.raises(InputError, match=f"--{opt.replace('_', '-')} '{word}': an ordinary token.*"
                                             f"--allow-ordinary-delimiter") as e:
            _tok(tok_file, **{opt: word})
        assert "\n" not in str(e.value)
    t = _tok(tok_file, eos_token=word, allow_ordinary_delimiter=True)
    assert t.eos_token == word
    special_id = str(t._vocab()["<|pad_1|>"])
    assert _tok(tok_file, bos_token=special_id).bos_token == "<|pad_1|>"


def test_convention_errors(tok_file):
    with pytest.raises(InputError, match="--convention 'gpt5': unknown"):
        _tok(tok_file, convention="gpt5")
    with pytest.raises(InputError, match="either the convention or the tokens"):
        _tok(tok_file, convention="llm.c", eos_token="none")
    with pytest.raises(InputError, match="not a token"):
        _tok(tok_file, bos_token="<|nope|>")


@pytest.fixture(scope="module")
def big_tok_file(tmp_path_factory):
    return big_vocab_tokenizer(tmp_path_factory.mktemp("big") / "tokenizer.json", stdlib_docstrings(150))


def test_modded_nanogpt_refuses_a_vocabulary_over_65536(tok_file, big_tok_file):
    """modded-nanogpt's ``_load_data_shard`` reads version 1 files only (uint16): a larger vocabulary,
    which the bin writer would store as version 7, is refused in one line; llm.c takes it."""
    with pytest.raises(InputError, match=r"--convention modded-nanogpt: .* 70,\d{3} token ids but modded-nanogpt "
                                         r"reads at most 65,536 \(its loader reads only version 1") as e:
        _tok(big_tok_file, convention="modded-nanogpt")
    assert "\n" not in str(e.value)
    assert _tok(big_tok_file, convention="llm.c").bos_id > 65535  # llm.c's Llama-3 branch reads version 7
    assert _tok(tok_file, convention="modded-nanogpt").bos_token == "<|endoftext|>"


def test_schedule_refuses_modded_nanogpt_with_a_large_vocabulary(tmp_path, embedded, clustered, big_tok_file):
    out = tmp_path / "s"
    code, output = invoke(["schedule", embedded, clustered, "--out", out, "--tokenizer", big_tok_file,
                           "--samples", 50, "--format", "bin", "--convention", "modded-nanogpt"])
    assert_one_line_error(code, output, "--convention modded-nanogpt:", "reads at most 65,536")
    assert not out.exists()  # refused before --out is touched


def test_schedule_with_trainer_convention_align_and_token_budget(tmp_path, embedded, clustered, demo_tokenizer):
    out = tmp_path / "s"
    budget = 3000
    run_cli(["schedule", embedded, clustered, "--out", out, "--tokenizer", demo_tokenizer, "--tokens", budget,
             "--convention", "llm.c", "--align-tokens", 128, "--shard-tokens", 1000,
             "--format", "bin,raw,datatrove"])
    manifest = json.loads((out / "manifest.json").read_text())
    s = manifest["settings"]
    assert s["convention"] == "llm.c" and s["align_tokens"] == 128 and s["eos_id"] is None
    index = read_index(out)
    eot = s["bos_id"]
    assert index["bos_id"] == eot and index["eos_id"] is None and index["delimiters"] == 1
    # the budget counted BOS + document: the stream in the shards is the budget's tokens
    assert index["n_tokens"] == manifest["statistics"]["tokens"] >= budget
    stream, starts = read_stream(out, "bin", index)
    assert len(stream) == index["n_tokens"] and (stream[starts] == eot).all()
    assert index["shards"]["bin"][1]["first_offset"] > 0 or index["shards"]["bin"][0]["continues"] is False
    assert all(r["tokens"] % 128 == 0 for r in index["shards"]["raw"][:-1])
    for fmt in ("bin", "raw", "datatrove"):
        assert np.array_equal(read_stream(out, fmt, index)[0], stream)
    tok = load_tokenizer(str(demo_tokenizer))
    docs = [json.loads(line) for line in open(embedded.parent.parent / "corpus" / "docs.jsonl")] \
        if (embedded.parent.parent / "corpus" / "docs.jsonl").exists() else None
    if docs is not None:  # position 0 decodes to <|endoftext|> + its document
        import pyarrow.parquet as pq

        d0 = int(pq.read_table(out / "order.parquet").column("doc_id")[0].as_py())
        assert tok.decode(read_sample(out, "bin", 0).tolist()) == "<|endoftext|>" + docs[d0]["text"]
    assert verify_shards(out) == []
    res = run_cli(["inspect", out, "--shards", "--sample", 1])
    assert "BOS id" in res.output and "look-ahead" in res.output and "starts inside sample" in res.output


def test_schedule_pack_rows(tmp_path, embedded, clustered, demo_tokenizer):
    out = tmp_path / "p"
    run_cli(["schedule", embedded, clustered, "--out", out, "--tokenizer", demo_tokenizer, "--samples", 60,
             "--pack", 96, "--shard-tokens", 1000, "--format", "parquet,mds,megatron,bin"])
    index = read_index(out)
    assert index["pack"] == 96 and all(r["tokens"] % 96 == 0 for r in index["shards"]["parquet"][:-1])
    ref = read_stream(out, "bin", index)
    for fmt in ("parquet", "mds", "megatron"):
        got = read_stream(out, fmt, index)
        assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1]), fmt
    res = run_cli(["schedule", embedded, clustered, "--out", tmp_path / "x", "--tokenizer", demo_tokenizer,
                   "--samples", 10, "--align-tokens", 64, "--format", "parquet"], expect_ok=False)
    assert res.exit_code == 2 and "--align-tokens 64: applies to token streams" in res.output


@pytest.mark.parametrize("flag", ["--align-tokens", "--pack"])
def test_a_window_longer_than_the_stream_is_refused_not_padded(tmp_path, embedded, clustered, demo_tokenizer, flag):
    """Found by the CLI fuzz: --align-tokens 2**40 padded the last shard with a trillion tokens."""
    from helpers import assert_one_line_error, invoke

    fmt = "bin" if flag == "--align-tokens" else "parquet"
    code, output = invoke(["schedule", embedded, clustered, "--out", tmp_path / "s", "--tokenizer", demo_tokenizer,
                           "--format", fmt, flag, 10**9])
    assert_one_line_error(code, output, f"{flag} {10**9}", "longer than the whole stream")
    assert not (tmp_path / "s" / "manifest.json").exists()
