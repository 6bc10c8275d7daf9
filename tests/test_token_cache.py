"""The token cache (issue 26.2): one token store per corpus content x tokenizer that later runs reuse.

Proved here: the union of disjoint stores is the bytes of one build over all their documents
(property); a cache obtained in any sequence of needs holds exactly their union, tokenizes each
document once, and keeps one verified version (property); the key depends on content only, not on
paths, batching or delimiters (property); a schedule writes the same bytes whether its tokens came
from the cache, were extended there or built fresh (only the manifest's ``token_cache`` record
differs); a damaged store is rebuilt, a bad location refused in one line; ``cache list|clean``;
two processes at once (one builds, the other waits, then reuses; a kill mid-build leaves nothing a
later run trusts) and kills at every step of a publish.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterclip.tokens.build import build_token_store
from clusterclip.tokens.cache import ENTRY, StoreKey, TokenCache, corpus_identity, store_key
from clusterclip.tokens.store import TokenStore, union_token_stores

from helpers import assert_one_line_error, clusterclip_command, invoke, run_cli, run_process, tree_bytes


class CharTok:
    """A tokenizer-like object (one id per character), 16- or 32-bit."""

    def __init__(self, vocab_size: int = 300):
        self.vocab_size = vocab_size

    def encode_batch(self, texts):
        return [[(ord(c) * 7919) % (self.vocab_size - 1) + 1 for c in t] for t in texts]

    def describe(self, **kw):
        return {"char": self.vocab_size}


def _build(texts, ids, tok, path) -> TokenStore:
    return build_token_store(((int(i), texts[i]) for i in ids), len(texts), tok, path, progress=False, batch_docs=3)


def _store_bytes(path: Path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in ("tokens.bin", "offsets.npy", "lengths.npy")}


texts_st = st.lists(st.text(alphabet="abcdé \n", max_size=9), min_size=0, max_size=24)


# --------------------------------------------------------------------------- union of stores (property)
@settings(max_examples=60, deadline=None)
@given(texts=texts_st, data=st.data(), vocab=st.sampled_from([300, 70_000]))
def test_the_union_of_disjoint_stores_is_one_build_over_all(texts, data, vocab):
    tok = CharTok(vocab)
    owner = data.draw(st.lists(st.integers(-1, 2), min_size=len(texts), max_size=len(texts)))  # -1: in none
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        parts = [_build(texts, [i for i, o in enumerate(owner) if o == k], tok, root / f"p{k}") for k in range(3)]
        union = union_token_stores(parts, root / "u")
        ref = _build(texts, [i for i, o in enumerate(owner) if o >= 0], tok, root / "ref")
        assert _store_bytes(root / "u") == _store_bytes(root / "ref")
        assert {k: v for k, v in union.meta.items() if k != "backend"} == {
            k: v for k, v in ref.meta.items() if k != "backend"}


def test_a_union_refuses_a_document_held_twice(tmp_path):
    texts = ["ab", "cd", "ef"]
    a, b = _build(texts, [0, 1], CharTok(), tmp_path / "a"), _build(texts, [1, 2], CharTok(), tmp_path / "b")
    with pytest.raises(ValueError, match="another store holds too"):
        union_token_stores([a, b], tmp_path / "u")


# --------------------------------------------------------------------------- the cache (property)
def _key(name: str = "k") -> StoreKey:
    return StoreKey(name.encode().hex().ljust(64, "0"), {"what": name}, {"char": 300})


@settings(max_examples=40, deadline=None)
@given(texts=st.lists(st.text(alphabet="xyz ", max_size=6), min_size=1, max_size=20), data=st.data())
def test_any_sequence_of_needs_tokenizes_each_document_once(texts, data):
    tok, n = CharTok(), len(texts)
    needs = data.draw(st.lists(st.lists(st.integers(0, n - 1), max_size=n), min_size=1, max_size=4))
    asked: list[list[int]] = []

    def build(ids, path):
        asked.append(ids.tolist())
        return _build(texts, ids, tok, path)

    with tempfile.TemporaryDirectory() as d:
        cache, seen = TokenCache(Path(d) / "cache"), set()
        for need in needs:
            existed = bool(asked)  # a version was published before
            with cache.obtain(_key(), need, build) as got:
                new = sorted(set(need) - seen)
                assert got.record["documents_tokenized"] == len(new)
                assert got.record["documents_from_cache"] == len(set(need)) - len(new)
                assert got.record["reused"] == (existed and not new)
                seen |= set(need)
                ref = _build(texts, sorted(seen), tok, Path(d) / f"ref{len(asked)}-{len(seen)}")
                assert _store_bytes(got.store.path) == _store_bytes(ref.path)  # the union, in doc_id order
        flat = [d for a in asked for d in a]  # only what was missing, each once, ascending
        assert all(a == sorted(a) for a in asked) and len(flat) == len(set(flat)) == len(seen)
        kdir = Path(d) / "cache" / _key().dirname
        assert sorted(p.name for p in kdir.iterdir() if p.name.startswith("v")) == [
            json.loads((kdir / ENTRY).read_text())["version"]]  # one version left, the one entry.json names
        assert not (kdir / "build").exists()


def test_a_reader_keeps_its_version_until_it_releases_it(tmp_path):
    texts = ["aa", "bb", "cc", "dd"]
    cache = TokenCache(tmp_path / "c")

    def build(ids, path):
        return _build(texts, ids, CharTok(), path)

    first = cache.obtain(_key(), [0, 1], build)
    second = cache.obtain(_key(), [2], build)  # extends: a new version while `first` still reads the old one
    kdir = tmp_path / "c" / _key().dirname
    assert first.store.path != second.store.path and first.store.path.is_dir()
    assert first.store.tokens(1).tolist() == CharTok().encode_batch(["bb"])[0]
    assert not cache.remove(kdir)  # in use
    first.release()
    with cache.obtain(_key(), [3], build) as third:
        assert third.record["documents_from_cache"] == 0
    assert not first.store.path.exists()  # the next builder deleted the version nobody reads any more
    assert second.store.path.is_dir()  # ... and kept the one `second` reads
    second.release()


def test_a_damaged_store_is_tokenized_again(tmp_path):
    texts = ["aa", "bb", "cc"]
    cache, calls = TokenCache(tmp_path / "c"), []

    def build(ids, path):
        calls.append(ids.tolist())
        return _build(texts, ids, CharTok(), path)

    with cache.obtain(_key(), [0, 1, 2], build) as got:
        tokens = got.store.path / "tokens.bin"
    data = bytearray(tokens.read_bytes())
    data[0] ^= 1
    tokens.chmod(0o644)
    tokens.write_bytes(bytes(data))
    notes: list[str] = []
    with cache.obtain(_key(), [1], build, log=notes.append) as again:
        assert again.record["reused"] is False and calls == [[0, 1, 2], [1]]
        assert again.store.tokens(1).tolist() == CharTok().encode_batch(["bb"])[0]
    assert any("sha256 differs" in n for n in notes), notes


# --------------------------------------------------------------------------- the key (property)
class FakeEmbed:
    """What ``corpus_identity`` reads of an embed directory: corpus files and docs.parquet's source/row."""

    def __init__(self, files: dict[str, str], sources: list[str], rows: list[int], batch: int, column: str = "text"):
        self.corpus_files = [{"path": p, "sha256": sha, "bytes": 10} for p, sha in files.items()]
        self.sources, self.rows, self.batch, self.text_column = sources, rows, batch, column
        self.n_docs, self.path = len(sources), Path("emb")

    def docs_file(self) -> Path:
        return self.path / "docs.parquet"

    def iter_docs(self, columns):
        for a in range(0, self.n_docs, self.batch):
            yield pa.record_batch([pa.array(self.sources[a:a + self.batch]), pa.array(self.rows[a:a + self.batch])],
                                  names=columns)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n_files=st.integers(1, 3), n_docs=st.integers(1, 30))
def test_the_corpus_key_is_its_content_whatever_the_paths_and_batches(data, n_files, n_docs):
    shas = [f"{i:064x}" for i in range(n_files)]
    which = data.draw(st.lists(st.integers(0, n_files - 1), min_size=n_docs, max_size=n_docs))
    rows = data.draw(st.lists(st.integers(0, 50), min_size=n_docs, max_size=n_docs))

    def emb(prefix: str, batch: int, rows=rows, column="text", shas=shas):
        files = {f"/{prefix}/f{i}.jsonl": sha for i, sha in enumerate(shas)}
        return FakeEmbed(files, [f"/{prefix}/f{w}.jsonl" for w in which], rows, batch, column)

    one = corpus_identity(emb("a", data.draw(st.integers(1, 8))))
    assert corpus_identity(emb("elsewhere/b", data.draw(st.integers(1, 40)))) == one  # moved, other batches
    j = data.draw(st.integers(0, n_docs - 1))
    other_rows = [r + (i == j) for i, r in enumerate(rows)]
    assert corpus_identity(emb("a", 4, rows=other_rows)) != one  # one document is another row
    assert corpus_identity(emb("a", 4, column="body")) != one
    assert corpus_identity(emb("a", 4, shas=["f" + s[1:] for s in shas])) != one  # the files' content changed


def test_the_tokenizer_key_is_its_content_not_its_path_or_delimiters(tmp_path, demo_tokenizer):
    from clusterclip.tokens.tokenizer import load_tokenizer

    copy = tmp_path / "elsewhere.json"
    copy.write_bytes(Path(demo_tokenizer).read_bytes())
    emb = FakeEmbed({"/c.jsonl": "0" * 64}, ["/c.jsonl"] * 3, [0, 1, 2], 2)
    a, b = load_tokenizer(str(demo_tokenizer)), load_tokenizer(str(copy))
    b.set_delimiters(convention="llm.c")
    assert store_key(emb, a).key == store_key(emb, b).key
    other = tmp_path / "other.json"
    spec = json.loads(Path(demo_tokenizer).read_text())
    spec["model"]["vocab"]["zzzz-new"] = max(spec["model"]["vocab"].values()) + 1
    other.write_text(json.dumps(spec))
    assert store_key(emb, load_tokenizer(str(other))).key != store_key(emb, a).key


# --------------------------------------------------------------------------- schedules
def _schedule(embedded, clustered, tok, out, *args):
    return run_cli(["schedule", embedded, clustered, "--out", out, "--tokenizer", tok, *args])


def _same_but_the_record(a: Path, b: Path) -> tuple[dict, dict]:
    """Every file of two schedule outputs is the same, the manifest apart from ``token_cache``: the two records."""
    ta, tb = tree_bytes(a), tree_bytes(b)
    ma, mb = json.loads(ta.pop("manifest.json")), json.loads(tb.pop("manifest.json"))
    assert ta == tb
    ra, rb = ma.pop("token_cache"), mb.pop("token_cache")
    ma.pop("checksum"), mb.pop("checksum")
    assert ma == mb
    return ra, rb


CONFIGS = {
    "bin": ["--samples", 70],
    "tokens balance, parquet": ["--balance", "tokens", "--epochs", 1.5, "--format", "parquet,bin"],
    "llm.c, megatron": ["--convention", "llm.c", "--format", "bin,megatron", "--samples", 90, "--seed", 4],
    "budget dry run": ["--budget-tokens", 3000, "--dry-run"],
    "pack": ["--pack", 64, "--format", "parquet", "--samples", 50, "--bos-token", "<|endoftext|>", "--eos-token", "none"],
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n != "bin" else n for n in CONFIGS])
def test_a_schedule_writes_the_same_bytes_from_the_cache(tmp_path, embedded, clustered, demo_tokenizer, name):
    """Fresh, extended (an earlier schedule tokenized a part) and reused (all in the cache): the same bytes."""
    args = CONFIGS[name]
    cache = str(tmp_path / "cache")
    _schedule(embedded, clustered, demo_tokenizer, tmp_path / "fresh", *args, "--token-cache", "none")
    _schedule(embedded, clustered, demo_tokenizer, tmp_path / "first", "--samples", 20, "--seed", 9,
              "--token-cache", cache)
    _schedule(embedded, clustered, demo_tokenizer, tmp_path / "extended", *args, "--token-cache", cache)
    _schedule(embedded, clustered, demo_tokenizer, tmp_path / "reused", *args, "--token-cache", cache)
    _schedule(embedded, clustered, demo_tokenizer, tmp_path / "own", *args, "--token-cache", tmp_path / "c2")
    fresh = json.loads((tmp_path / "fresh" / "manifest.json").read_text())
    assert "token_cache" not in fresh  # --token-cache none: no key, no record
    extended, reused = _same_but_the_record(tmp_path / "extended", tmp_path / "reused")
    own, _ = _same_but_the_record(tmp_path / "own", tmp_path / "reused")
    fresh_files = tree_bytes(tmp_path / "fresh")
    own_files = tree_bytes(tmp_path / "own")
    assert {k: v for k, v in fresh_files.items() if k != "manifest.json"} == {
        k: v for k, v in own_files.items() if k != "manifest.json"}
    assert extended["key"] == reused["key"] == own["key"]
    assert not extended["reused"] and extended["documents_from_cache"] > 0 and extended["documents_tokenized"] > 0
    assert reused["reused"] and reused["documents_tokenized"] == 0
    assert own["documents_from_cache"] == 0 and own["documents_tokenized"] == reused["documents_from_cache"]


def test_mixtures_tokenize_the_corpus_once(tmp_path, embedded, clustered, demo_tokenizer):
    out = run_cli(["mixtures", embedded, clustered, "--out", tmp_path / "mix", "--n", 3, "--balance", "tokens",
                   "--samples", 40, "--tokenizer", demo_tokenizer]).output
    records = [json.loads((tmp_path / "mix" / f"mixture-{i:03d}" / "manifest.json").read_text())["token_cache"]
               for i in range(3)]
    assert [r["reused"] for r in records] == [False, True, True], out
    assert len({r["key"] for r in records}) == 1


def test_a_bad_cache_location_is_one_line_and_writes_nothing(tmp_path, embedded, clustered, demo_tokenizer):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    cases = {embedded: "overlaps an input", Path(clustered) / "cache": "overlaps an input",
             tmp_path / "out" / "cache": "overlaps the output", tmp_path / "a-file": "a symbolic link or a file",
             tmp_path / "link": "a symbolic link or a file"}
    for where, needle in cases.items():
        before = tree_bytes(Path(embedded), private=True)
        code, output = invoke(["schedule", embedded, clustered, "--out", tmp_path / "out", "--tokenizer",
                               demo_tokenizer, "--token-cache", where])
        assert_one_line_error(code, output, "--token-cache", needle)
        assert not (tmp_path / "out").exists() and tree_bytes(Path(embedded), private=True) == before
    assert list((tmp_path / "real").iterdir()) == []


def test_a_link_inside_the_cache_is_refused(tmp_path, embedded, clustered, demo_tokenizer):
    cache = tmp_path / "cache"
    _schedule(embedded, clustered, demo_tokenizer, tmp_path / "s1", "--samples", 10, "--token-cache", cache)
    (kdir,) = [p for p in cache.iterdir() if p.is_dir()]
    kdir.rename(tmp_path / "moved")
    kdir.symlink_to(tmp_path / "moved")
    code, output = invoke(["schedule", embedded, clustered, "--out", tmp_path / "s2", "--tokenizer", demo_tokenizer,
                           "--samples", 10, "--token-cache", cache])
    assert_one_line_error(code, output, str(kdir), "symbolic link")


def test_cache_list_and_clean(tmp_path, embedded, clustered, demo_tokenizer):
    cache = tmp_path / "cache"
    _schedule(embedded, clustered, demo_tokenizer, tmp_path / "s", "--samples", 30, "--token-cache", cache)
    listed = json.loads(run_cli(["cache", "list", "--token-cache", cache, "--json"]).output)
    assert [e["state"] for e in listed] == ["ready"] and listed[0]["tokenized"] > 0 and listed[0]["bytes"] > 0
    assert "1 token store," in run_cli(["cache", "list", "--token-cache", cache]).output
    kept = run_cli(["cache", "clean", "--token-cache", cache, "--older-than", "1d"]).output
    assert "deleted 0 token stores" in kept and Path(listed[0]["dir"]).is_dir()
    run_cli(["cache", "clean", "--token-cache", cache, "--dry-run"])
    assert Path(listed[0]["dir"]).is_dir()
    holder = TokenCache(cache).obtain(StoreKey(listed[0]["key"], {}, {}), [], lambda ids, p: None)
    busy = run_cli(["cache", "clean", "--token-cache", cache]).output
    assert "in use" in busy and Path(listed[0]["dir"]).is_dir()
    holder.release()
    assert "deleted 1 token store " in run_cli(["cache", "clean", "--token-cache", cache]).output
    assert not Path(listed[0]["dir"]).exists()
    code, output = invoke(["cache", "clean", "--older-than", "30"])
    assert_one_line_error(code, output, "--older-than", "unit")


# --------------------------------------------------------------------------- processes at once, kills
def _args(emb, cl, tok, out, cache) -> list:
    return ["schedule", emb, cl, "--out", out, "--tokenizer", tok, "--epochs", 2, "--format", "bin,parquet",
            "--token-cache", cache]


def _cache_is_clean(cache: Path) -> dict:
    """One KEY with one version, the one entry.json names, its files as recorded; no build, no staging left."""
    (kdir,) = [p for p in cache.iterdir()]
    entry = json.loads((kdir / ENTRY).read_text())
    assert sorted(p.name for p in kdir.iterdir() if p.name.startswith(("v", ".stage"))) == [entry["version"]]
    from clusterclip.tokens.cache import _check_files

    assert _check_files(kdir / entry["version"], entry["files"]) is None
    return entry


def _line_with(proc: subprocess.Popen, needle: str, deadline: float) -> str:
    """The first line of ``proc``'s stderr holding ``needle`` (read as it comes)."""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            line = proc.stderr.readline()
            assert line, "the second run ended without saying that it waits"
            if needle in line:
                return line
    raise AssertionError(f"no {needle!r} on stderr in time")


@pytest.mark.slow
@pytest.mark.parametrize("then", ["continues", "is killed"])
def test_two_runs_at_once_one_builds_the_other_waits(tmp_path, embedded, clustered, demo_tokenizer, then):
    cache = tmp_path / "cache"
    reference = tmp_path / "ref"
    run_cli(_args(embedded, clustered, demo_tokenizer, reference, tmp_path / "ref-cache"))
    env = {**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1"}
    first = subprocess.Popen(clusterclip_command(*_args(embedded, clustered, demo_tokenizer, tmp_path / "a", cache)),
                             env={**env, "CLUSTERCLIP_FAULT": "schedule.tokens:1:stop"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = None
    try:
        deadline = time.monotonic() + 300
        lock = next(iter(cache.glob("*/build.lock")), None)
        while lock is None or not lock.read_text():  # frozen mid-build, holding the build lock
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.02)
            lock = next(iter(cache.glob("*/build.lock")), None)
        second = subprocess.Popen(clusterclip_command(*_args(embedded, clustered, demo_tokenizer, tmp_path / "b",
                                                             cache)),
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = _line_with(second, "another run is tokenizing this corpus", deadline)
        assert f"pid {first.pid}" in waiting and second.poll() is None  # it says whom it waits for, and waits
        first.send_signal(signal.SIGCONT if then == "continues" else signal.SIGKILL)
        _, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
        first.wait(timeout=300)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    first.wait()
    _, b = _same_but_the_record(reference, tmp_path / "b")
    if then == "continues":
        assert first.returncode == 0
        a, _ = _same_but_the_record(reference, tmp_path / "a")
        assert not a["reused"] and b["reused"]  # the first built, the second reused
    else:
        assert first.returncode == -signal.SIGKILL and not (tmp_path / "a" / "manifest.json").exists()
        # the killed run's build was never published: the second finished it (from its fsynced progress)
        assert not b["reused"] and b["documents_from_cache"] == 0
    _cache_is_clean(cache)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["schedule.tokens:1", "cache.union", "cache.version", "cache.entry"])
def test_a_kill_while_publishing_leaves_nothing_a_later_run_trusts(tmp_path, embedded, clustered, demo_tokenizer,
                                                                     point):
    cache = tmp_path / "cache"
    if point == "cache.union":  # a union needs a version to extend
        run_process("schedule", embedded, clustered, "--out", tmp_path / "first", "--tokenizer", demo_tokenizer,
                    "--samples", 15, "--token-cache", cache)
    args = _args(embedded, clustered, demo_tokenizer, tmp_path / "s", cache)
    killed = run_process(*args, check=False, env={"CLUSTERCLIP_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_process(*args)
    run_cli(_args(embedded, clustered, demo_tokenizer, tmp_path / "ref", tmp_path / "ref-cache"))
    _, record = _same_but_the_record(tmp_path / "ref", tmp_path / "s")
    entry = _cache_is_clean(cache)
    assert entry["n_tokenized"] == record["documents_tokenized"] + record["documents_from_cache"]
