"""Corpus readers: formats, compression, discovery, sharding, errors and reading texts back."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from clusterclip.artifacts import build_manifest, file_fingerprint, finish_output_dir, write_parquet_atomic
from clusterclip.errors import InputError
from clusterclip.readers import (
    ReadStats,
    Sharding,
    expand_inputs,
    file_format,
    iter_documents,
    preflight,
    read_texts,
)

TEXTS = [f"document number {i}: " + "word " * (i % 7 + 1) for i in range(30)]


def jsonl_bytes(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")


def write_jsonl(path: Path, records, comp: str = "") -> Path:
    data = jsonl_bytes(records)
    if comp == "gz":
        data = gzip.compress(data)
    elif comp == "zst":
        data = zstandard.ZstdCompressor().compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_parquet(path: Path, columns: dict, row_group_size: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def docs(paths, **kw):
    return list(iter_documents(paths, **kw))


# --------------------------------------------------------------------------- discovery
def test_file_format_knows_every_supported_extension():
    assert file_format("a.parquet") == ("parquet", "")
    assert file_format("a.jsonl.zst") == ("jsonl", "zst")
    assert file_format("a.JSON.gz") == ("jsonl", "gz")
    assert file_format("a.ndjson") == ("jsonl", "")
    assert file_format("a.csv") is None


def test_expand_inputs_files_dirs_globs_sorted_and_deduplicated(tmp_path):
    d = tmp_path / "corpus"
    for name in ["b.jsonl", "a.parquet", "sub/c.jsonl.gz", "sub/z.ndjson.zst", ".hidden/x.jsonl", "_tmp.jsonl", "notes.txt"]:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text("{}\n")
    got = expand_inputs([d])
    assert [p.relative_to(d).as_posix() for p in got] == ["a.parquet", "b.jsonl", "sub/c.jsonl.gz", "sub/z.ndjson.zst"]
    assert all(p.is_absolute() for p in got)
    # a glob, then a file already matched (kept once, first place), in argument order
    got = expand_inputs([str(d / "sub" / "*"), d / "b.jsonl", str(d / "sub" / "c.jsonl.gz")])
    assert [p.name for p in got] == ["c.jsonl.gz", "z.ndjson.zst", "b.jsonl"]
    got = expand_inputs(str(d / "**" / "*.jsonl*"))
    assert [p.name for p in got] == ["_tmp.jsonl", "b.jsonl", "c.jsonl.gz"]  # a glob is taken literally


@pytest.mark.parametrize("arg, needle", [
    ("missing.jsonl", "no such file or directory"),
    ("notes.txt", "unsupported file type"),
    ("nomatch*.jsonl", "matches no files"),
    ("emptydir", "holds no"),
])
def test_expand_inputs_errors_name_the_path(tmp_path, arg, needle):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError) as e:
        expand_inputs([str(tmp_path / arg)])
    msg = str(e.value)
    assert needle in msg and "\n" not in msg and arg.split("*")[0] in msg


# --------------------------------------------------------------------------- formats
@pytest.mark.parametrize("comp", ["", "gz", "zst"])
def test_jsonl_plain_and_compressed(tmp_path, comp):
    recs = [{"text": t, "id": f"d{i}"} for i, t in enumerate(TEXTS)]
    p = write_jsonl(tmp_path / ("c.jsonl" + (f".{comp}" if comp else "")), recs, comp)
    got = docs([p], id_column="id")
    assert [g[2] for g in got] == TEXTS
    assert [g[1] for g in got] == list(range(len(TEXTS)))
    assert [g[3] for g in got] == [f"d{i}" for i in range(len(TEXTS))]
    assert {g[0] for g in got} == {str(p)}


def test_parquet_streams_all_row_groups_in_order(tmp_path):
    p = write_parquet(tmp_path / "c.parquet", {"body": TEXTS, "uid": list(range(100, 130))}, row_group_size=4)
    assert pq.ParquetFile(p).num_row_groups == 8
    got = docs([p], text_column="body", id_column="uid")
    assert [g[2] for g in got] == TEXTS and [g[1] for g in got] == list(range(30))
    assert [g[3] for g in got] == list(range(100, 130))


def test_empty_documents_are_skipped_and_counted_and_blank_lines_ignored(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "a"}\n\n{"text": "   \\n\\t"}\n{"text": "b"}\n')
    stats = ReadStats()
    got = docs([p], stats=stats)
    assert [(g[1], g[2]) for g in got] == [(0, "a"), (3, "b")]
    assert stats.skipped_empty == 1 and stats.documents == 2 and stats.rows == 4


def test_bom_and_crlf_are_tolerated(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "a"}\r\n{"text": "b"}\r\n')
    assert [g[2] for g in docs([p])] == ["a", "b"]


# --------------------------------------------------------------------------- sharding
@pytest.mark.parametrize("block", [1, 3, 5, 64])
def test_shards_partition_the_rows_in_order(tmp_path, block):
    a = write_parquet(tmp_path / "a.parquet", {"text": TEXTS[:17]}, row_group_size=3)
    b = write_jsonl(tmp_path / "b.jsonl.zst", [{"text": t} for t in TEXTS[17:]], "zst")
    everything = docs([a, b])
    parts = [docs([a, b], shard=Sharding(3, i, block)) for i in range(3)]
    merged = sorted((d for p in parts for d in p), key=lambda d: (d[0] != str(a), d[1]))
    assert merged == everything
    for i, part in enumerate(parts):  # each shard owns whole blocks of global rows
        for src, row, _, _ in part:
            g = row if src == str(a) else 17 + row
            assert (g // block) % 3 == i


def test_sharding_owns_range():
    s = Sharding(4, 2, 10)
    assert s.owns_range(20, 21) and not s.owns_range(0, 20) and s.owns_range(0, 40) and not s.owns_range(5, 5)


# --------------------------------------------------------------------------- errors
def _bad_inputs(tmp_path: Path) -> dict:
    t = tmp_path
    cases = {}
    cases["missing column"] = (write_jsonl(t / "a.jsonl", [{"body": "x", "id": 1}]), ("no field 'text'", "body, id", "--text-column"))
    cases["missing parquet column"] = (write_parquet(t / "a.parquet", {"body": ["x"]}), ("no column 'text'", "body"))
    cases["null text"] = (write_jsonl(t / "n.jsonl", [{"text": "ok"}, {"text": None}]), ("line 2", "null"))
    cases["null parquet text"] = (write_parquet(t / "n.parquet", {"text": ["ok", "fine", None]}), ("row 2", "null"))
    cases["number text"] = (write_jsonl(t / "i.jsonl", [{"text": 5}]), ("line 1", "int, not a string"))
    cases["int column"] = (write_parquet(t / "i.parquet", {"text": [1, 2]}), ("type int64", "not string"))
    p = t / "u.jsonl"
    p.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    cases["bad utf8"] = (p, ("line 2", "invalid UTF-8"))
    p = t / "m.jsonl"
    p.write_text('{"text": "ok"}\n{"text": "oops"\n')
    cases["malformed json"] = (p, ("line 2", "malformed JSON"))
    p = t / "arr.json"
    p.write_text('[{"text": "a"},\n{"text": "b"}]\n')
    cases["json array"] = (p, ("JSON array", "jq"))
    p = t / "list.jsonl"
    p.write_text('["a"]\n')
    cases["not an object"] = (p, ("line 1", "not an object"))
    p = t / "empty.jsonl"
    p.write_text("")
    cases["empty jsonl"] = (p, ("empty file",))
    p = t / "empty.parquet"
    p.write_bytes(b"")
    cases["empty parquet"] = (p, ("empty file",))
    good = write_parquet(t / "good.parquet", {"text": TEXTS})
    p = t / "trunc.parquet"
    p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated parquet"] = (p, ("not a valid Parquet file",))
    p = t / "trunc.jsonl.gz"
    data = gzip.compress(jsonl_bytes([{"text": x} for x in TEXTS * 20]))
    p.write_bytes(data[: len(data) // 2])
    cases["truncated gzip"] = (p, ("corrupt or truncated gzip",))
    p = t / "trunc.jsonl.zst"
    data = zstandard.ZstdCompressor().compress(jsonl_bytes([{"text": x} for x in TEXTS * 20]))
    p.write_bytes(data[: len(data) // 2])
    cases["truncated zstd"] = (p, ("corrupt or truncated zstd",))
    p = t / "c.parquet.gz"
    p.write_bytes(gzip.compress(good.read_bytes()))
    cases["gzipped parquet"] = (p, ("compressed Parquet",))
    return cases


BAD_CASES = ["missing column", "missing parquet column", "null text", "null parquet text", "number text",
             "int column", "bad utf8", "malformed json", "json array", "not an object", "empty jsonl",
             "empty parquet", "truncated parquet", "truncated gzip", "truncated zstd", "gzipped parquet"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_inputs_give_one_line_errors_naming_file_and_row(tmp_path, case):
    path, needles = _bad_inputs(tmp_path)[case]
    with pytest.raises(InputError) as e:
        docs([path])
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    for n in needles:
        assert n in msg, msg


def test_all_empty_is_left_to_the_caller_but_counted(tmp_path):
    p = write_jsonl(tmp_path / "e.jsonl", [{"text": " "}, {"text": ""}])
    stats = ReadStats()
    assert docs([p], stats=stats) == [] and stats.skipped_empty == 2


def test_preflight_catches_schema_problems_without_reading_everything(tmp_path):
    good = write_jsonl(tmp_path / "g.jsonl", [{"text": "a", "id": 1}])
    preflight([good], "text", "id")
    with pytest.raises(InputError, match="no field 'uid'"):
        preflight([good], "text", "uid")
    with pytest.raises(InputError, match="no field 'content'"):
        preflight([good], "content")


# --------------------------------------------------------------------------- read_texts
def _fake_embed_dir(tmp_path: Path, files: list[Path], text_column: str) -> tuple[Path, list[str]]:
    """An embed directory (docs.parquet + manifest) for every non-empty document of ``files``."""
    out = tmp_path / "emb"
    out.mkdir()
    got = docs(files, text_column=text_column)
    table = pa.table({
        "doc_id": pa.array(np.arange(len(got), dtype=np.int64)),
        "source": pa.array([g[0] for g in got]),
        "row": pa.array([g[1] for g in got], type=pa.int64()),
        "n_chars": pa.array([len(g[2]) for g in got], type=pa.int64()),
    })
    write_parquet_atomic(out / "docs.parquet", table, row_group_size=7)
    settings = {"text_column": text_column, "id_column": None}
    inputs = {"files": [file_fingerprint(f) for f in files]}
    finish_output_dir(out, build_manifest("embed", settings, inputs, [], {"n_docs": len(got), "dim": 4, "skipped_empty": 0}))
    return out, [g[2] for g in got]


def test_read_texts_streams_chosen_documents_back_from_every_format(tmp_path):
    long_texts = [t * 3 for t in TEXTS]
    a = write_parquet(tmp_path / "a.parquet", {"body": long_texts[:13]}, row_group_size=4)
    b = write_jsonl(tmp_path / "b.jsonl.zst", [{"body": t} for t in long_texts[13:22]] + [{"body": "  "}], "zst")
    c = write_jsonl(tmp_path / "c.jsonl.gz", [{"body": t} for t in long_texts[22:]], "gz")
    emb, texts = _fake_embed_dir(tmp_path, [a, b, c], "body")
    assert texts == long_texts
    ids = np.array([0, 3, 4, 12, 13, 14, 21, 22, 29])
    assert list(read_texts(emb, ids)) == [(int(i), long_texts[i]) for i in ids]
    assert [t for _, t in read_texts(emb, np.arange(len(texts)))] == long_texts
    assert list(read_texts(emb, np.array([], dtype=np.int64))) == []
    assert list(read_texts(emb, [14, 14, 15])) == [(14, long_texts[14]), (14, long_texts[14]), (15, long_texts[15])]
    with pytest.raises(InputError, match="out of range"):
        list(read_texts(emb, [len(texts)]))


def test_read_texts_refuses_a_changed_corpus(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in TEXTS])
    emb, _ = _fake_embed_dir(tmp_path, [a], "text")
    a.write_text(a.read_text() + '{"text": "new"}\n')
    with pytest.raises(InputError, match="changed since `embed`"):
        list(read_texts(emb, [0]))
    os.remove(a)
    with pytest.raises(InputError, match="no longer exists"):
        list(read_texts(emb, [0]))
