"""Generic properties of every registered shard format (a new format gets them for free).

Hypothesis draws sample-length distributions x shard_tokens x delimiters x (whole samples |
--align-tokens W | --pack L) x the formats that mode applies to, writes them with the real
writer, reads every format back through its own layout and checks: every format holds exactly
the order's samples (accounting), all formats agree at every position with the stream built
independently, and the cut points are identical across formats.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterclip.errors import InputError
from clusterclip.shards import (
    FORMATS,
    check_formats,
    formats_help,
    read_index,
    read_sample,
    read_stream,
    verify_shards,
    write_shards,
)

from shards_testlib import stream_of, synthetic_store

BOS, EOS = 1, 2
CUT_KEYS = ("index", "start", "stop", "first_offset", "samples", "continues", "tokens", "start_token")


def _formats_for(mode: str) -> tuple[str, ...]:
    if mode == "align":
        return tuple(f for f, c in FORMATS.items() if c.supports_align)
    if mode == "pack":
        return tuple(f for f, c in FORMATS.items() if c.supports_pack)
    return tuple(FORMATS)


@st.composite
def cases(draw):
    vocab = draw(st.sampled_from([300, 70_000]))
    n_docs = draw(st.integers(1, 12))
    dist = draw(st.sampled_from(["short", "mixed", "long"]))
    hi = {"short": 3, "mixed": 40, "long": 120}[dist]
    lens = draw(st.lists(st.integers(0, hi), min_size=n_docs, max_size=n_docs))
    order = draw(st.lists(st.integers(0, n_docs - 1), min_size=0, max_size=50))
    mode = draw(st.sampled_from(["samples", "align", "pack"]))
    pairs = [(None, EOS), (BOS, None), (BOS, EOS)] + ([(None, None)] if mode == "samples" else [])
    bos, eos = draw(st.sampled_from(pairs))
    unit = draw(st.integers(1, 24))
    shard_tokens = draw(st.integers(1, 150))
    seed = draw(st.integers(0, 2**16))
    return vocab, lens, order, mode, bos, eos, unit, shard_tokens, seed


def _write(root, case):
    vocab, lens, order, mode, bos, eos, unit, shard_tokens, seed = case
    rng = np.random.default_rng(seed)
    docs = [rng.integers(3, vocab, size=n) for n in lens]
    store = synthetic_store(root / "store", docs, vocab)
    order = np.asarray(order, dtype=np.int64)
    formats = _formats_for(mode)
    kw = {"align_tokens": unit} if mode == "align" else {"pack": unit} if mode == "pack" else {}
    index = write_shards(order, (order % 5).astype(np.int32), np.zeros(len(order), np.int32), store, root / "out",
                         formats=formats, shard_tokens=shard_tokens, eos_id=eos, bos_id=bos, vocab_size=vocab,
                         progress=False, resume=False, **kw)
    return store, order, formats, index


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_format_holds_the_order_and_all_agree(case):
    _vocab, _lens, _order_list, mode, bos, eos, unit, _shard_tokens, _seed = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store, order, formats, index = _write(root, case)
        out = root / "out"
        stream, starts = stream_of(store, order, bos, eos)
        assert index["n_samples"] == len(order) and index["n_tokens"] == len(stream)
        cuts = None
        for fmt in formats:
            recs = index["shards"][fmt]
            # accounting: every sample begins in exactly one shard, the tokens add up
            assert sum(r["samples"] for r in recs) == len(order)
            assert sum(r["tokens"] for r in recs) == len(stream)
            assert [r["start_token"] for r in recs] == list(np.cumsum([0] + [r["tokens"] for r in recs])[:-1])
            mine = [tuple(r[k] for k in CUT_KEYS) for r in recs]
            cuts = cuts or mine
            assert mine == cuts, f"{fmt} cuts the stream elsewhere"
            if bos is None and eos is None and FORMATS[fmt].needs_delimiter_to_read:
                continue
            got, got_starts = read_stream(out, fmt, index)
            assert np.array_equal(got, stream), fmt
            assert np.array_equal(got_starts, starts), fmt
            for i in sorted({0, len(order) // 2, len(order) - 1}) if len(order) else []:
                expected = stream[starts[i]: starts[i] + _size(starts, stream, i)]
                assert np.array_equal(read_sample(out, fmt, i, index), expected)
        if mode == "samples":
            assert all(r["first_offset"] == 0 and not r["continues"] for r in index["shards"][formats[0]])
        else:
            recs = index["shards"][formats[0]]
            assert all(r["tokens"] % unit == 0 for r in recs[:-1])
            if recs:
                last = recs[-1]
                assert (last["tokens"] + last["pad"]) % unit == 0 and last["pad"] < unit * (1 + (len(stream) == 0))
        assert verify_shards(out) == []


def _size(starts, stream, i):
    return (starts[i + 1] if i + 1 < len(starts) else len(stream)) - starts[i]


@settings(max_examples=25, deadline=None)
@given(cases().filter(lambda c: c[3] == "align"))
def test_aligned_streams_read_whole_by_a_w_plus_one_reader(case):
    """Each token-stream file holds m*W + 1 tokens; its last is the next file's first (or a pad)."""
    vocab, _lens, _order_list, _mode, bos, eos, unit, _shard_tokens, _seed = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store, order, _formats, index = _write(root, case)
        stream, _ = stream_of(store, order, bos, eos)
        from clusterclip.shards.raw import RawFormat

        dtype = RawFormat.token_dtype(vocab)
        files = [np.fromfile(root / "out" / r["files"][0]["path"], dtype=dtype).astype(np.int64)
                 for r in index["shards"]["raw"]]
        seen = []
        for k, f in enumerate(files):
            assert (len(f) - 1) % unit == 0 and len(f) >= unit + 1
            nxt = files[k + 1][0] if k + 1 < len(files) else index["pad_id"]
            assert f[-1] == nxt
            for w in range((len(f) - 1) // unit):  # llm.c: windows of W + 1, advancing W
                x, y = f[w * unit: w * unit + unit], f[w * unit + 1: w * unit + unit + 1]
                seen.append(x)
                assert np.array_equal(x[1:], y[:-1])
        seen = np.concatenate(seen) if seen else np.zeros(0, np.int64)
        assert np.array_equal(seen[: len(stream)], stream)  # nothing dropped
        assert (seen[len(stream):] == index["pad_id"]).all()


def test_registry_drives_help_and_choices():
    assert list(FORMATS) == ["bin", "raw", "megatron", "mds", "datatrove", "parquet"]
    for name, cls in FORMATS.items():
        assert cls.name == name and name in formats_help()
        assert cls.token_dtype(65536).itemsize == 2 and cls.token_dtype(65536 + 1).itemsize == 4 or name == "parquet"
    from click.testing import CliRunner

    from clusterclip.cli import cli

    for cmd in (["schedule", "--help"], ["inspect", "--help"]):
        res = CliRunner().invoke(cli, cmd)
        assert all(name in res.output for name in FORMATS), cmd


def test_dtype_rules_of_each_format():
    small, big = 1 << 16, (1 << 16) + 1
    expect = {"bin": ("uint16", "uint32"), "raw": ("uint16", "uint32"), "megatron": ("uint16", "int32"),
              "mds": ("uint16", "int32"), "datatrove": ("uint16", "uint32"), "parquet": ("int32", "int32")}
    for name, cls in FORMATS.items():
        assert (cls.token_dtype(small).name, cls.token_dtype(big).name) == expect[name]


@pytest.mark.parametrize("bad", [{"align_tokens": 8, "formats": ("parquet",)},
                                 {"align_tokens": 8, "formats": ("megatron",)},
                                 {"align_tokens": 8, "pack": 8, "formats": ("bin",)}])
def test_options_that_do_not_apply_are_refused(bad):
    formats = bad.pop("formats")
    with pytest.raises(InputError, match="--align-tokens"):
        check_formats(formats, **bad)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    rng = np.random.default_rng(0)
    case = (300, rng.integers(0, 30, size=10).tolist(), rng.integers(0, 10, size=60).tolist(), "samples", None, EOS,
            1, 80, 1)
    _write(root, case)
    return root / "out"


def _tampered(written, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(written, out)
    return out, read_index(out)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "stray"])
def test_verify_names_each_damaged_file(written, tmp_path, fmt, damage):
    out, index = _tampered(written, tmp_path)
    rec = index["shards"][fmt][1]["files"][0]
    p = out / rec["path"]
    if damage == "flip":
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x01
        p.write_bytes(bytes(data))
    elif damage == "truncate":
        p.write_bytes(p.read_bytes()[:-1])
    elif damage == "delete":
        p.unlink()
    else:
        stray = max((out / fmt).glob(FORMATS[fmt].pattern))
        p = stray.with_name(stray.name.replace("0", "9", 1))
        p.write_bytes(stray.read_bytes())
    problems = verify_shards(out)
    assert len(problems) == 1 and str(p) in problems[0], problems
    assert "\n" not in problems[0]


def test_verify_checks_dataset_files_and_the_index(written, tmp_path):
    out, index = _tampered(written, tmp_path)
    (out / "mds" / "index.json").write_text(json.dumps({"version": 2, "shards": []}))
    assert [str(out / "mds" / "index.json") in p for p in verify_shards(out)] == [True]
    index["shards"]["bin"][0]["samples"] += 1
    (out / "shards.json").write_text(json.dumps(index))
    assert any("format bin holds" in p for p in verify_shards(out))
    (out / "shards.json").write_text("{")
    assert verify_shards(out) == [f"{out / 'shards.json'}: unreadable (JSONDecodeError); rerun "
                                  f"`clusterclip schedule` into a new --out (or with --overwrite)"]


def test_resume_never_keeps_a_changed_file(written, tmp_path):
    """A same-size edit of a committed shard is caught by the journal's sha256, not by its size."""
    from clusterclip.shards.journal import JOURNAL_FILE, ShardJournal

    out, index = _tampered(written, tmp_path)
    journal = ShardJournal(out / JOURNAL_FILE)
    rec = index["shards"]["raw"][0]
    journal.append({"format": "raw", "index": 0, "key": "k", "files": rec["files"], "written": {}, "rows": None})
    assert journal.load().kept(out, "raw", 0, "k") is not None
    p = out / rec["files"][0]["path"]
    data = bytearray(p.read_bytes())
    data[0] ^= 0xFF
    p.write_bytes(bytes(data))
    assert journal.load().kept(out, "raw", 0, "k") is None
    assert hashlib.sha256(p.read_bytes()).hexdigest() != rec["files"][0]["sha256"]
