"""The token cache: one token store per corpus content x tokenizer, reused by every later run.

A schedule tokenizes the documents it uses; the next schedule of the same corpus and tokenizer
(other weights, balance, budget, seed, delimiters, formats: a mixture swarm) finds them here and
spends only planning and writing. Layout of a cache directory (``--token-cache``, default
``$CLUSTERCLIP_CACHE/tokens``, :mod:`clusterclip.cache`)::

    KEY/                one corpus content x tokenizer (the first 32 hex digits of its key)
      entry.json        what KEY is of, its current version, and the size + sha256 of each of its files
      v000002/          a published token store (tokens.bin, offsets.npy, lengths.npy, meta.json): never changed
        .readers        held (shared) by every run reading this version: never deleted under a reader
      build/            the build in progress: want.json (which documents) + tokens/ (resumable)
      build.lock        held (exclusive) by the one run that tokenizes into KEY; a second run waits, then reuses
      entry.lock        held briefly: exclusive to publish or delete a version, shared to pick the current one
      used              its modification time is when a run last used KEY (``cache clean --older-than``)

**The key** (:func:`store_key`) is the sha256 of what decides the tokens: the corpus by content (each
document's file, by sha256 and format, and row; the text column; as ``embed`` recorded them, so a
moved or re-embedded corpus keeps its key), the tokenizer by content (sha256 of its
``tokenizer.json`` or serialisation, vocabulary size; not its path, not which exact backend
encodes) and how text is encoded (the store's layout version, :data:`ENCODING`). Delimiters are not
part of it: a store holds no BOS/EOS (they are added as the shards are written), so schedules with
other ``--convention``/``--bos-token``/``--eos-token`` share one store.

**Reuse and extension** (:meth:`TokenCache.obtain`): when the current version holds every document a
run needs, it is used as it is, after its files are checked against the sizes and sha256 recorded
when it was published. Otherwise only the documents it lacks are tokenized (in ``build/``, by the
run's engine, resumable) and a new version holding both is published (:func:`union_token_stores`:
tokens in doc_id order, the bytes one build over all of them would write). The store holds the
documents runs have needed so far rather than the whole corpus: a trial schedule of a few thousand
samples does not pay for tokenizing a corpus of millions, and a swarm of schedules converges on
the documents any of them uses.

**Concurrency and kills.** One run builds a KEY at a time (``build.lock``; a second run says that it
waits, then finds what the first published). A version is written under a staging name, fsynced,
renamed into place, and only then named by ``entry.json`` (replaced atomically): a kill at any point
leaves either the old entry or the new one, never a half-written store that a run would trust. A
staging directory or a version that ``entry.json`` does not name is deleted by the next builder
(when no run reads it). ``build/`` is resumed only by a run that wants the same documents of the
same KEY with the same tokenizer record (``want.json``), through the build's own fsynced progress.
A cache directory and everything in it are real directories and files (no link is followed) and
are never inside an input or the output of the run (:meth:`TokenCache.for_run`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..artifacts.files import (
    dumps_json,
    file_record,
    fsync_dir,
    remove_stale_temporaries,
    sha256_file,
    write_json_atomic,
)
from ..errors import ClusterClipError, InputError, MismatchError
from ..faults import checkpoint
from .store import STORE_FILES, STORE_VERSION, TokenStore, tokenizer_record, union_token_stores

CACHE_FORMAT = 1
ENTRY = "entry.json"
WANT = "want.json"
BUILD_DIR = "build"
BUILD_LOCK = "build.lock"
ENTRY_LOCK = "entry.lock"
READERS_LOCK = ".readers"
USED = "used"
STAGE_PREFIX = ".stage-"
KEY_CHARS = 32
_KEY_DIR = re.compile(r"[0-9a-f]{%d}" % KEY_CHARS)
_VERSION = re.compile(r"v(\d{6})")
#: how a document's text becomes its tokens (the encoding contract of :mod:`.tokenizer`): part of every key,
#: so a change of it never reuses a store encoded the old way
ENCODING = "token ids of the text alone: no special tokens added, special-token strings encoded as text"

#: ``build(doc_ids, path)``: the token store of ``doc_ids`` (ascending) built at ``path`` (resumable there)
Builder = Callable[[np.ndarray, Path], TokenStore]
Say = Callable[[str], None]


# --------------------------------------------------------------------------- the key
@dataclass(frozen=True)
class StoreKey:
    """What a cached store is of: ``key`` (sha256 hex), ``identity`` (what went into it), ``builder`` (the
    tokenizer record a build is made with: a build is resumed only by a run of the same)."""

    key: str
    identity: dict
    builder: dict = field(default_factory=dict)

    @property
    def dirname(self) -> str:
        return self.key[:KEY_CHARS]


def store_key(emb, tokenizer) -> StoreKey:
    """The key of the token store of ``emb``'s documents (an ``EmbedDir``) encoded by ``tokenizer``."""
    identity = {"cache_format": CACHE_FORMAT, "store_version": STORE_VERSION, "encoding": ENCODING,
                "tokenizer": _tokenizer_identity(tokenizer), "corpus": corpus_identity(emb)}
    key = hashlib.sha256(dumps_json(identity).encode("utf-8")).hexdigest()
    return StoreKey(key, identity, tokenizer_record(tokenizer))


def _tokenizer_identity(tokenizer) -> dict:
    record = tokenizer_record(tokenizer)
    if record.get("sha256"):  # a Tokenizer: its content, not its path, name or delimiters
        return {"sha256": record["sha256"], "vocab_size": int(tokenizer.vocab_size)}
    return {"record": record, "vocab_size": int(tokenizer.vocab_size)}


def corpus_identity(emb) -> dict:
    """Each document's text, by content: its file (sha256, size, format) and row, in doc_id order; the text column.

    Read from ``docs.parquet`` (its digest checked) and the corpus files ``embed`` recorded, so it does not depend
    on where the corpus or the embed directory is, on the embedding model, or on how ``docs.parquet`` is batched.
    """
    from ..readers import reader_class

    recorded = {f["path"]: f for f in emb.corpus_files}
    names: dict[str, int] = {}
    file_of_doc, row_of_doc = hashlib.sha256(), hashlib.sha256()
    for batch in emb.iter_docs(["source", "row"]):
        sources = batch.column(0).dictionary_encode()
        local = np.array([names.setdefault(n, len(names)) for n in sources.dictionary.to_pylist()], dtype=np.int64)
        codes = sources.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        file_of_doc.update(local[codes].astype("<i8").tobytes())
        row_of_doc.update(batch.column(1).to_numpy(zero_copy_only=False).astype("<i8").tobytes())
    files = []
    for name in names:
        rec = recorded.get(name)
        if rec is None:
            raise MismatchError(f"{emb.docs_file()}: names the corpus file {name}, which {emb.path}/manifest.json does "
                                f"not list; rerun `clusterclip embed`")
        found = reader_class(name)
        kind = f"{found[0].format}{'+' + found[1] if found and found[1] else ''}" if found else "?"
        files.append({"sha256": rec["sha256"], "bytes": int(rec["bytes"]), "format": kind})
    return {"n_docs": int(emb.n_docs), "text_column": emb.text_column, "files": files,
            "file_of_doc": file_of_doc.hexdigest(), "row_of_doc": row_of_doc.hexdigest()}


# --------------------------------------------------------------------------- what a run gets
def obtain_tokens(emb, tokenizer, doc_ids, *, cache: TokenCache | None, path: str | os.PathLike,
                  build: Builder | None = None, rehash: bool = False, progress: bool = True,
                  log: Say | None = None) -> CachedTokens:
    """The token store holding ``doc_ids`` of ``emb`` (an ``EmbedDir``) encoded by ``tokenizer``: from ``cache``
    (extended first when it lacks some; :meth:`TokenCache.for_run` gives the cache of ``--token-cache``), or without
    one, built at ``path`` (the run's own work folder). ``build(ids, path)`` tokenizes (default: in this process, the
    texts read back through ``emb``). The corpus is checked against what ``embed`` recorded either way. Use it as a
    context manager (or ``release()`` it): until then no run deletes the store.
    """
    ids = np.unique(np.asarray(doc_ids, dtype=np.int64))
    build = build or _local_builder(emb, tokenizer, progress)
    emb.check_corpus(rehash=rehash, progress=progress)
    if cache is None:
        return CachedTokens(build(ids, Path(path)), None)
    return cache.obtain(store_key(emb, tokenizer), ids, build, log=log)


def _local_builder(emb, tokenizer, progress: bool) -> Builder:
    from .build import build_token_store

    def build(ids: np.ndarray, path: Path) -> TokenStore:
        return build_token_store(lambda: emb.texts(ids), int(emb.n_docs), tokenizer, path, progress=progress,
                                 total=len(ids))

    return build


@dataclass
class CachedTokens:
    """A token store in use by this run (``release()`` when done: until then no run deletes it) and the record
    the run's manifest keeps (``key``, ``reused``, ``documents_tokenized``, ``documents_from_cache``; None when
    it was built without a cache)."""

    store: TokenStore
    record: dict | None
    lease: int | None = None

    def release(self) -> None:
        if self.lease is not None:
            os.close(self.lease)  # closing releases the shared lock
            self.lease = None

    def __enter__(self) -> CachedTokens:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass
class _Current:
    """The version ``entry.json`` names, opened under its readers' lock."""

    version: str
    store: TokenStore
    lease: int | None

    def covers(self, need: np.ndarray) -> bool:
        return bool(np.all(np.asarray(self.store.lengths)[need] >= 0)) if len(need) else True

    def release(self) -> None:
        if self.lease is not None:
            os.close(self.lease)
            self.lease = None


# --------------------------------------------------------------------------- the cache
class TokenCache:
    """A token cache directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @classmethod
    def for_run(cls, value: str | None, *, inputs: Iterable[str | os.PathLike] = (),
                out: str | os.PathLike | None = None) -> TokenCache | None:
        """The cache of ``--token-cache`` (None: the default; ``none``: no cache), refused in one line when it is
        inside an input or the run's output (or holds one), or is a link or a file."""
        from ..cache import token_cache_dir

        root = token_cache_dir(value)
        if root is None:
            return None
        cache = cls(root)
        cache.check_location(inputs, out)
        return cache

    def check_location(self, inputs: Iterable[str | os.PathLike], out: str | os.PathLike | None) -> None:
        flag = f"--token-cache {self.root}"
        if os.path.islink(self.root) or (self.root.exists() and not self.root.is_dir()):
            raise InputError(f"{flag}: is a symbolic link or a file; clusterclip writes the cache only into a real "
                             f"directory: give another --token-cache (or 'none')")
        here = self.root.resolve()
        places = [("an input", Path(p)) for p in inputs] + ([("the output (--out)", Path(out))] if out else [])
        for what, p in places:
            other = p.resolve()
            if here == other or other in here.parents or here in other.parents:
                raise InputError(f"{flag}: overlaps {what} {p}; the cache must be a directory of its own: give "
                                 f"another --token-cache (or 'none')")

    # ------------------------------------------------------------------ obtain
    def obtain(self, key: StoreKey, need, build: Builder, *, log: Say | None = None) -> CachedTokens:
        """The store holding every document of ``need`` (doc_ids), from the cache, extended first if it lacks some."""
        say = log or _quiet
        need = np.unique(np.asarray(need, dtype=np.int64))
        kdir = self._key_dir(key)
        cur = self._current(kdir, key, say, verify=False)
        if cur is not None and cur.covers(need) and self._verified(kdir, cur, say):
            got = self._reused(key, cur, need)
            say(f"token cache: the {len(need):,} documents are in {kdir} (tokenized by an earlier run)")
        else:
            if cur is not None:
                cur.release()
            got = self._build_locked(kdir, key, need, build, say)
        _touch(kdir / USED)
        return got

    def _build_locked(self, kdir: Path, key: StoreKey, need: np.ndarray, build: Builder, say: Say) -> CachedTokens:
        lock = _lock(kdir / BUILD_LOCK, fcntl.LOCK_EX, wait=False)
        if lock is None:
            say(f"token cache: another run is tokenizing this corpus into {kdir} ({_holder(kdir / BUILD_LOCK)}); "
                f"waiting for it")
            lock = _lock(kdir / BUILD_LOCK, fcntl.LOCK_EX)
        assert lock is not None
        try:
            os.ftruncate(lock, 0)
            os.pwrite(lock, f"pid {os.getpid()}".encode(), 0)
            cur = self._current(kdir, key, say, verify=True)  # a run before this one may have published it
            if cur is not None and cur.covers(need):
                say(f"token cache: the {len(need):,} documents are in {kdir} (tokenized by another run)")
                return self._reused(key, cur, need)
            try:
                return self._extend(kdir, key, need, build, cur, say)
            finally:
                if cur is not None:
                    cur.release()
        finally:
            os.close(lock)

    def _reused(self, key: StoreKey, cur: _Current, need: np.ndarray) -> CachedTokens:
        record = {"key": key.key, "reused": True, "documents_tokenized": 0, "documents_from_cache": len(need)}
        lease, cur.lease = cur.lease, None  # the run's now
        return CachedTokens(cur.store, record, lease)

    def _current(self, kdir: Path, key: StoreKey, say: Say, *, verify: bool) -> _Current | None:
        """The published version (its readers' lock held), or None when there is none or it fails its check."""
        with _locked(kdir / ENTRY_LOCK, fcntl.LOCK_SH):
            entry = _read_json(kdir / ENTRY)
            if entry is None or entry.get("key") != key.key or not _VERSION.fullmatch(str(entry.get("version"))):
                return None
            vdir = kdir / entry["version"]
            try:
                lease = _lock(vdir / READERS_LOCK, fcntl.LOCK_SH, make_parent=False)
            except OSError:
                lease = None
        if lease is None:
            return None
        cur = None
        try:
            cur = _Current(entry["version"], TokenStore.open(vdir), lease)
        except (ClusterClipError, OSError, ValueError, KeyError) as e:
            say(f"token cache: {vdir} cannot be read ({type(e).__name__}); tokenizing again")
        if cur is None or (verify and not self._verified(kdir, cur, say, entry)):
            os.close(lease)
            return None
        return cur

    def _verified(self, kdir: Path, cur: _Current, say: Say, entry: dict | None = None) -> bool:
        """Whether every file of the version has the size and sha256 recorded when it was published."""
        entry = entry or _read_json(kdir / ENTRY) or {}
        records = entry.get("files") if entry.get("version") == cur.version else None
        problem = _check_files(kdir / cur.version, records)
        if problem:
            say(f"token cache: {problem}; tokenizing again")
        return problem is None

    # ------------------------------------------------------------------ build and publish
    def _extend(self, kdir: Path, key: StoreKey, need: np.ndarray, build: Builder, cur: _Current | None,
                say: Say) -> CachedTokens:
        missing = need if cur is None else need[np.asarray(cur.store.lengths)[need] < 0]
        self._sweep(kdir, keep={cur.version} if cur else set())
        if cur is not None:
            say(f"token cache: {len(need) - len(missing):,} of {len(need):,} documents are in {kdir}; tokenizing "
                f"the other {len(missing):,}")
        built = self._build(kdir, key, missing, build)
        version = self._publish(kdir, key, cur, built)
        lease = _lock(kdir / version / READERS_LOCK, fcntl.LOCK_SH, make_parent=False)
        assert lease is not None
        shutil.rmtree(kdir / BUILD_DIR, ignore_errors=True)
        record = {"key": key.key, "reused": False, "documents_tokenized": len(missing),
                  "documents_from_cache": len(need) - len(missing)}
        return CachedTokens(TokenStore.open(kdir / version), record, lease)

    def _build(self, kdir: Path, key: StoreKey, missing: np.ndarray, build: Builder) -> TokenStore:
        """The store of ``missing`` built in ``build/``: resumed when a killed run wanted the same, else anew."""
        bdir = kdir / BUILD_DIR
        want = {"key": key.key, "documents": len(missing), "tokenizer": key.builder,
                "doc_ids": hashlib.sha256(np.ascontiguousarray(missing, dtype="<i8").tobytes()).hexdigest()}
        if os.path.lexists(bdir) and _read_json(bdir / WANT) != want:
            _remove_tree(bdir)
        _real_dir(bdir)
        if _read_json(bdir / WANT) is None:
            write_json_atomic(bdir / WANT, want)
        return build(missing, bdir / "tokens")

    def _publish(self, kdir: Path, key: StoreKey, cur: _Current | None, built: TokenStore) -> str:
        """``built`` (or its union with the current version) as the next version, named by ``entry.json`` last."""
        numbers = [int(m.group(1)) for m in (_VERSION.fullmatch(e.name) for e in os.scandir(kdir)) if m]
        version = f"v{max(numbers, default=0) + 1:06d}"
        if cur is None:
            remove_stale_temporaries(built.path)  # its files were fsynced as they were finished
            os.rename(built.path, kdir / version)
        else:
            stage = kdir / f"{STAGE_PREFIX}{version}-{os.getpid()}"
            union_token_stores([cur.store, built], stage)
            checkpoint("cache.union")
            os.rename(stage, kdir / version)
            cur.release()  # read no more: the sweep below may delete it
        fsync_dir(kdir)
        checkpoint("cache.version")  # a version no entry names: deleted by the next builder
        store = TokenStore.open(kdir / version)
        entry = {"cache_format": CACHE_FORMAT, "key": key.key, "identity": key.identity, "version": version,
                 "files": [file_record(kdir / version, name) for name in STORE_FILES],
                 "n_docs": store.n_docs, "n_tokenized": int(store.meta.get("n_tokenized", 0)),
                 "n_tokens": store.n_tokens, "tokenizer": key.builder.get("spec")}
        with _locked(kdir / ENTRY_LOCK, fcntl.LOCK_EX):
            write_json_atomic(kdir / ENTRY, entry)
            checkpoint("cache.entry")
            self._sweep(kdir, keep={version}, locked=True)
        return version

    def _sweep(self, kdir: Path, keep: set[str], *, locked: bool = False) -> None:
        """Delete staging directories and the versions not in ``keep`` that no run reads (a builder's chore)."""
        with contextlib.nullcontext() if locked else _locked(kdir / ENTRY_LOCK, fcntl.LOCK_EX):
            for e in os.scandir(kdir):
                if e.name.startswith(STAGE_PREFIX):
                    _remove_tree(Path(e.path))
                elif _VERSION.fullmatch(e.name) and e.name not in keep:
                    _remove_unread(Path(e.path))

    def _key_dir(self, key: StoreKey) -> Path:
        _real_dir(self.root, parents=True)
        return _real_dir(self.root / key.dirname)

    # ------------------------------------------------------------------ list and clean
    def entries(self) -> list[dict]:
        """Every KEY directory: ``dir``, ``key``, ``state`` (ready / building / incomplete), ``tokenizer``,
        ``documents`` (of the corpus), ``tokenized``, ``tokens``, ``bytes`` (on disk), ``last_used`` (epoch s)."""
        if not self.root.is_dir():
            return []
        out = []
        for e in sorted(os.scandir(self.root), key=lambda e: e.name):
            if _KEY_DIR.fullmatch(e.name) and e.is_dir(follow_symlinks=False):
                out.append(_describe(Path(e.path)))
        return out

    def remove(self, kdir: str | os.PathLike, *, dry_run: bool = False) -> bool:
        """Delete one KEY directory unless a run is building it or reading one of its versions (then False)."""
        kdir = Path(kdir)
        if not _KEY_DIR.fullmatch(kdir.name) or kdir.parent.resolve() != self.root.resolve() or kdir.is_symlink():
            raise InputError(f"{kdir}: not a token store of the cache {self.root}")
        held: list[int] = []
        try:
            for path in [kdir / BUILD_LOCK, kdir / ENTRY_LOCK] + [
                    Path(e.path) / READERS_LOCK for e in os.scandir(kdir) if _VERSION.fullmatch(e.name)]:
                fd = _lock(path, fcntl.LOCK_EX, wait=False, make_parent=False)
                if fd is None:
                    return False
                held.append(fd)
            if not dry_run:
                _remove_tree(kdir)
            return True
        finally:
            for fd in held:
                os.close(fd)


# --------------------------------------------------------------------------- helpers
def _quiet(message: str) -> None:
    pass


def _describe(kdir: Path) -> dict:
    entry = _read_json(kdir / ENTRY) or {}
    size = 0
    for dirpath, _, files in os.walk(kdir):
        for name in files:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(dirpath, name)).st_size
    used = [p for p in (kdir / USED, kdir / ENTRY, kdir) if os.path.lexists(p)]
    corpus = (entry.get("identity") or {}).get("corpus") or {}
    state = "ready" if entry else ("building" if (kdir / BUILD_DIR).exists() else "incomplete")
    return {"dir": str(kdir), "key": entry.get("key") or kdir.name, "state": state,
            "tokenizer": entry.get("tokenizer"), "documents": corpus.get("n_docs"),
            "tokenized": entry.get("n_tokenized", 0), "tokens": entry.get("n_tokens", 0), "bytes": size,
            "last_used": max(os.lstat(p).st_mtime for p in used)}


def _check_files(vdir: Path, records: list[dict] | None) -> str | None:
    """None when every recorded file of ``vdir`` has its size and sha256, else one line naming the first that differs."""
    if not records or sorted(str(r.get("path")) for r in records) != sorted(STORE_FILES):
        return f"{vdir}: not named with its files' digests by {vdir.parent / ENTRY}"
    for rec in records:
        p = vdir / rec["path"]
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return f"{p}: missing"
        if not stat.S_ISREG(st.st_mode):
            return f"{p}: not a regular file"
        if st.st_size != rec["bytes"]:
            return f"{p}: {st.st_size} bytes, but {rec['bytes']} were recorded (truncated or replaced)"
        if sha256_file(p) != rec["sha256"]:
            return f"{p}: its sha256 differs from the one recorded when it was built (damaged or replaced)"
    return None


def _read_json(path: Path) -> dict | None:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _real_dir(path: Path, *, parents: bool = False) -> Path:
    """``path`` made if missing; refused in one line when it is a link or not a directory."""
    try:
        path.mkdir(parents=parents, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        pass
    except PermissionError:
        raise InputError(f"{path}: not writable; give --token-cache a directory you can write (or 'none')") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise InputError(f"{path}: is {kind} in the token cache; clusterclip writes there only into directories it "
                         f"made and never through a link: remove it (or give another --token-cache)")
    return path


def _lock(path: Path, mode: int, *, wait: bool = True, make_parent: bool = True) -> int | None:
    """An open descriptor of ``path`` holding ``flock(mode)`` (None when ``wait`` is False and another holds it).

    The file is opened without following a link; if it was deleted (``cache clean``) while this process waited,
    the lock is taken again on the new file, so two runs never hold two different files of one name.
    """
    while True:
        if make_parent:
            _real_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, mode | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            here = os.stat(path, follow_symlinks=False)
            mine = os.fstat(fd)
            if (here.st_ino, here.st_dev) == (mine.st_ino, mine.st_dev):
                return fd
        except FileNotFoundError:
            if not make_parent and not path.parent.exists():
                os.close(fd)
                raise
        os.close(fd)


@contextlib.contextmanager
def _locked(path: Path, mode: int):
    fd = _lock(path, mode)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _holder(path: Path) -> str:
    try:
        return path.read_text("utf-8").strip() or "another process"
    except OSError:
        return "another process"


def _touch(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.utime(fd)
    finally:
        os.close(fd)


def _remove_unread(vdir: Path) -> None:
    """Delete a version directory unless a run holds its readers' lock."""
    if not vdir.is_dir() or vdir.is_symlink():
        _remove_tree(vdir)
        return
    try:
        fd = _lock(vdir / READERS_LOCK, fcntl.LOCK_EX, wait=False, make_parent=False)
    except OSError:  # gone already
        return
    if fd is None:  # a run reads it
        return
    try:
        _remove_tree(vdir)
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    """Delete a directory of the cache (a link in its place is removed, never followed)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)

