"""Corpus readers: formats, compression, discovery, partitioning, accounting, errors and texts read back."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterclip.artifacts import build_manifest, file_record, write_json_atomic, write_parquet_atomic
from clusterclip.artifacts.corpus import describe_files
from clusterclip.embed import EmbedDir
from clusterclip.errors import ClusterClipError, InputError
from clusterclip.readers import Partitioning, ReadStats, expand_inputs, iter_documents, reader_class, reader_for

from helpers import jsonl_bytes, write_jsonl, write_parquet

TEXTS = [f"document number {i}: " + "word " * (i % 7 + 1) for i in range(30)]


def docs(paths, text_column="text", id_column=None, stats=None, partition=None):
    return list(iter_documents([reader_for(p) for p in paths], text_column, id_column, stats=stats,
                               partition=partition))


# --------------------------------------------------------------------------- discovery
def test_reader_class_knows_every_supported_extension():
    def fmt(name):
        found = reader_class(name)
        return None if found is None else (found[0].format, found[1])

    assert fmt("a.parquet") == ("parquet", "")
    assert fmt("a.jsonl.zst") == ("jsonl", "zstd")
    assert fmt("a.JSON.gz") == ("jsonl", "gzip")
    assert fmt("a.ndjson") == ("jsonl", "")
    assert fmt("a.csv") is None


def test_expand_inputs_files_dirs_globs_sorted_and_deduplicated(tmp_path):
    d = tmp_path / "corpus"
    for name in ["b.jsonl", "a.parquet", "sub/c.jsonl.gz", "sub/z.ndjson.zst", ".hidden/x.jsonl", "_tmp.jsonl", "notes.txt"]:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text("{}\n")
    found = expand_inputs([d])
    got = found.files
    assert [p.relative_to(d).as_posix() for p in got] == ["a.parquet", "b.jsonl", "sub/c.jsonl.gz", "sub/z.ndjson.zst"]
    assert all(p.is_absolute() for p in got)
    assert [p.name for p in found.unsupported] == ["notes.txt"]  # listed, not silently dropped
    # a glob, then a file already matched (kept once, first place), in argument order
    got = expand_inputs([str(d / "sub" / "*"), d / "b.jsonl", str(d / "sub" / "c.jsonl.gz")]).files
    assert [p.name for p in got] == ["c.jsonl.gz", "z.ndjson.zst", "b.jsonl"]
    got = expand_inputs(str(d / "**" / "*.jsonl*")).files
    assert [p.name for p in got] == ["_tmp.jsonl", "b.jsonl", "c.jsonl.gz"]  # a glob is taken literally


@pytest.mark.parametrize("arg, needle", [
    ("missing.jsonl", "no such file or directory"),
    ("notes.txt", "unsupported file type"),
    ("nomatch*.jsonl", "matches no files"),
    ("emptydir", "holds no"),
    ("s3://bucket/data.jsonl", "remote inputs"),
    ("hf://datasets/x/y", "remote inputs"),
])
def test_expand_inputs_errors_name_the_path(tmp_path, arg, needle):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "emptydir").mkdir()
    target = arg if "://" in arg else str(tmp_path / arg)
    with pytest.raises(InputError) as e:
        expand_inputs([target])
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
    assert stats.skipped_empty == 2 and stats.documents == 2 and stats.rows == 4  # a blank line is an empty row


def test_the_first_empty_rows_are_listed_by_file_and_row(tmp_path):
    """Every empty row is counted; the first EMPTY_ROWS_LISTED are listed (file, row) in input order, over files."""
    from clusterclip.readers.base import EMPTY_ROWS_LISTED

    a = write_jsonl(tmp_path / "a.jsonl", [{"text": "x" if i % 2 else " "} for i in range(120)])
    b = write_parquet(tmp_path / "b.parquet", {"text": ["", "y"] * 60}, row_group_size=7)
    stats = ReadStats()
    docs = list(iter_documents([reader_for(a), reader_for(b)], stats=stats))
    assert len(docs) == 120 and stats.skipped_empty == 120
    expected = [[str(a), i] for i in range(0, 120, 2)] + [[str(b), i] for i in range(0, 120, 2)]
    assert stats.empty_rows == expected[:EMPTY_ROWS_LISTED] and len(stats.empty_rows) == EMPTY_ROWS_LISTED
    assert stats.record()["skipped"] == {"empty": 120, "empty_rows": expected[:EMPTY_ROWS_LISTED]}


def test_bom_and_crlf_are_tolerated(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "a"}\r\n{"text": "b"}\r\n')
    assert [g[2] for g in docs([p])] == ["a", "b"]


# --------------------------------------------------------------------------- partitions and accounting
@settings(max_examples=40, deadline=None)
@given(n_a=st.integers(1, 25), n_b=st.integers(1, 25), count=st.integers(1, 5), block=st.integers(1, 9),
       group=st.integers(1, 7), empties=st.sets(st.integers(0, 49), max_size=10))
def test_every_row_is_a_document_an_empty_skip_or_another_partitions(tmp_path_factory, n_a, n_b, count, block,
                                                                      group, empties):
    """For any sizes, row groups, partition counts and blocks: each partition accounts for every row,
    and the partitions together yield each document exactly once, in order."""
    tmp = tmp_path_factory.mktemp("acct")
    texts = [(" " if i in empties else f"doc {i} text") for i in range(n_a + n_b)]
    a = write_parquet(tmp / "a.parquet", {"text": texts[:n_a]}, row_group_size=group)
    b = write_jsonl(tmp / "b.jsonl.zst", [{"text": t} for t in texts[n_a:]], "zst")
    whole = ReadStats()
    everything = docs([a, b], stats=whole)
    assert whole.complete and whole.rows == n_a + n_b == whole.documents + whole.skipped_empty
    assert [d[2] for d in everything] == [t for t in texts if t.strip()]
    parts, documents, empty = [], 0, 0
    for i in range(count):
        stats = ReadStats()
        part = docs([a, b], stats=stats, partition=Partitioning(count, i, block))
        stats.check("test")  # raises on a violation
        assert stats.rows == n_a + n_b == stats.documents + stats.skipped_empty + stats.other_partitions
        for src, row, _, _ in part:  # each partition owns whole blocks of global rows
            g = row if src == str(a) else n_a + row
            assert (g // block) % count == i
        parts.extend(part)
        documents += stats.documents
        empty += stats.skipped_empty
    assert documents + empty == n_a + n_b and documents == len(everything)
    assert sorted(parts, key=lambda d: (d[0] != str(a), d[1])) == everything


@given(count=st.integers(1, 6), block=st.integers(1, 10), start=st.integers(0, 200), length=st.integers(0, 200))
def test_partition_ownership_counts_are_exact(count, block, start, length):
    for index in range(count):
        p = Partitioning(count, index, block)
        brute = sum(p.owns(r) for r in range(start, start + length))
        assert p.owned_in(start, start + length) == brute
        assert p.owns_any(start, start + length) == (brute > 0)


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


def test_check_catches_schema_problems_without_reading_everything(tmp_path):
    good = write_jsonl(tmp_path / "g.jsonl", [{"text": "a", "id": 1}])
    reader_for(good).check("text", "id")
    with pytest.raises(InputError, match="no field 'uid'"):
        reader_for(good).check("text", "uid")
    with pytest.raises(InputError, match="no field 'content'"):
        reader_for(good).check("content", None)
    pq_file = write_parquet(tmp_path / "g.parquet", {"text": ["a"], "meta": [[1, 2]]})
    with pytest.raises(InputError, match="ids must be strings or numbers"):
        reader_for(pq_file).check("text", "meta")


# --------------------------------------------------------------------------- texts read back
def _fake_embed_dir(tmp_path: Path, files: list[Path], text_column: str) -> tuple[Path, list[str]]:
    """An embed directory (docs.parquet + manifest, no embeddings) for every document of ``files``."""
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
    records, stat_cache = describe_files([Path(f).resolve() for f in files])
    manifest = build_manifest("embed", {"text_column": text_column, "id_column": None}, {"files": records},
                              [file_record(out, "docs.parquet")], {"n_docs": len(got), "dim": 4, "skipped_empty": 0},
                              extra={"corpus_stat": stat_cache})
    write_json_atomic(out / "manifest.json", manifest)
    return out, [g[2] for g in got]


def test_read_texts_streams_chosen_documents_back_from_every_format(tmp_path):
    long_texts = [t * 3 for t in TEXTS]
    a = write_parquet(tmp_path / "a.parquet", {"body": long_texts[:13]}, row_group_size=4)
    b = write_jsonl(tmp_path / "b.jsonl.zst", [{"body": t} for t in long_texts[13:22]] + [{"body": "  "}], "zst")
    c = write_jsonl(tmp_path / "c.jsonl.gz", [{"body": t} for t in long_texts[22:]], "gz")
    emb, texts = _fake_embed_dir(tmp_path, [a, b, c], "body")
    assert texts == long_texts
    ids = np.array([0, 3, 4, 12, 13, 14, 21, 22, 29])
    d = EmbedDir(emb)
    assert list(d.texts(ids)) == [(int(i), long_texts[i]) for i in ids]
    assert [t for _, t in d.texts(np.arange(len(texts)))] == long_texts
    assert list(d.texts(np.array([], dtype=np.int64))) == []
    assert list(d.texts([14, 14, 15])) == [(14, long_texts[14]), (14, long_texts[14]), (15, long_texts[15])]
    with pytest.raises(ClusterClipError, match="out of range"):
        list(d.texts([len(texts)]))


def test_read_texts_refuses_a_changed_corpus(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in TEXTS])
    emb, _ = _fake_embed_dir(tmp_path, [a], "text")
    a.write_text(a.read_text() + '{"text": "new"}\n')
    with pytest.raises(ClusterClipError, match="content changed since `clusterclip embed`"):
        list(EmbedDir(emb).texts([0]))
    os.remove(a)
    with pytest.raises(ClusterClipError, match="no longer exists"):
        list(EmbedDir(emb).texts([0]))


def test_an_edit_that_keeps_size_and_mtime_is_still_seen(tmp_path):
    """cp -p, rsync and tar keep the modification time; the content digest still catches the edit."""
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": t} for t in TEXTS])
    emb, _ = _fake_embed_dir(tmp_path, [a], "text")
    st = a.stat()
    data = bytearray(a.read_bytes())
    data[20] = ord("X") if data[20] != ord("X") else ord("Y")
    a.write_bytes(bytes(data))
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert a.stat().st_size == st.st_size and a.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(ClusterClipError, match="content changed"):
        list(EmbedDir(emb).texts([0]))
