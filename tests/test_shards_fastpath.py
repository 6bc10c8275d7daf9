"""The shard writers' fast path writes exactly the bytes of the reference path.

Fast path: the token store's vectorised gather (``np.repeat`` + ``np.take``), the samples handed
to the writers in cache-sized blocks gathered ahead by threads, each file written and hashed by a
thread of its own that flushes to the disk as it goes. Reference path: every sample built
document by document in Python, one block per piece (the pieces of ``PIECE_TOKENS``, the Parquet
row groups), gathered, written and hashed in the caller. Hypothesis draws the formats of each mode (whole samples,
``--align-tokens W``, ``--pack L``), the delimiters, both token widths, and sizes that land on
the boundaries users hit: samples of exactly ``W`` tokens (and one off), shards that end exactly at
a sample or a window, blocks and pieces of one token, of ``W``, of a whole shard.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clusterclip.errors import InputError
from clusterclip.shards import FORMATS, base, plan, verify_shards, write_shards
from clusterclip.tokens.store import TokenStore

from shards_testlib import synthetic_store, tree_bytes

BOS, EOS = 1, 2


def reference_gather(store, doc_ids, eos_id, out_dtype=None, *, bos_id=None):
    """``TokenStore.gather`` written the obvious way: one document at a time."""
    parts: list[int] = []
    sizes = []
    for d in np.asarray(doc_ids, dtype=np.int64).tolist():
        sample = ([bos_id] if bos_id is not None else []) + np.asarray(store.tokens(d)).tolist() \
            + ([eos_id] if eos_id is not None else [])
        parts += sample
        sizes.append(len(sample))
    return np.asarray(parts, dtype=np.dtype(out_dtype or store.dtype)), np.asarray(sizes, dtype=np.int64)


def _formats_for(mode: str) -> tuple[str, ...]:
    if mode == "align":
        return tuple(f for f, c in FORMATS.items() if c.supports_align)
    if mode == "pack":
        return tuple(f for f, c in FORMATS.items() if c.supports_pack)
    return tuple(FORMATS)


@st.composite
def boundary_cases(draw):
    mode = draw(st.sampled_from(["samples", "align", "pack"]))
    pairs = [(None, EOS), (BOS, None), (BOS, EOS)] + ([(None, None)] if mode == "samples" else [])
    bos, eos = draw(st.sampled_from(pairs))
    delims = (bos is not None) + (eos is not None)
    unit = draw(st.integers(1, 16))
    # document lengths whose samples are exactly k windows, or one token off, or anything
    exact = sorted({max(0, k * unit - delims + e) for k in (1, 2, 3) for e in (-1, 0, 1)})
    n_docs = draw(st.integers(1, 10))
    lens = draw(st.lists(st.one_of(st.sampled_from(exact), st.integers(0, 3 * unit + 4)),
                         min_size=n_docs, max_size=n_docs))
    n = draw(st.integers(0, 40))
    order = draw(st.lists(st.integers(0, n_docs - 1), min_size=n, max_size=n))
    sizes = [lens[d] + delims for d in order]
    prefix = [int(x) for x in np.cumsum(sizes) if x > 0][:8]  # a shard ends exactly at a sample
    shard_tokens = draw(st.one_of(st.integers(1, 200), st.sampled_from([unit * k for k in (1, 2, 3, 5)]),
                                  st.sampled_from(prefix or [1])))
    block = draw(st.one_of(st.integers(1, 12), st.sampled_from([1, unit, shard_tokens, 1 << 16])))
    piece = draw(st.one_of(st.integers(1, 200), st.sampled_from([1, unit, shard_tokens, 1 << 22])))
    return {
        "vocab": draw(st.sampled_from([300, 70_000])), "mode": mode, "bos": bos, "eos": eos, "unit": unit,
        "lens": lens, "order": order, "shard_tokens": shard_tokens, "block": block, "piece": piece,
        "queue": draw(st.sampled_from([1, 32])), "sync": draw(st.sampled_from([512, 4 << 20])),
        "threads": draw(st.sampled_from([0, 1, 2, 3])),
        "seed": draw(st.integers(0, 2**16)),
    }


def _write(store, case, out: Path) -> dict | str:
    order = np.asarray(case["order"], dtype=np.int64)
    mode, unit = case["mode"], case["unit"]
    kw = {"align_tokens": unit} if mode == "align" else {"pack": unit} if mode == "pack" else {}
    try:
        return write_shards(order, (order % 5).astype(np.int32), (order % 3).astype(np.int32), store, out,
                            formats=_formats_for(mode), shard_tokens=case["shard_tokens"], eos_id=case["eos"],
                            bos_id=case["bos"], vocab_size=case["vocab"], progress=False, resume=False, **kw)
    except InputError as e:
        return str(e)


def _check_same_bytes(case) -> None:
    rng = np.random.default_rng(case["seed"])
    docs = [rng.integers(3, case["vocab"], size=n) for n in case["lens"]]
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        root = Path(tmp)
        store = synthetic_store(root / "store", docs, case["vocab"])
        mp.setattr(plan, "PIECE_TOKENS", case["piece"])  # part of the layout: the same in both runs
        with pytest.MonkeyPatch.context() as ref:
            ref.setattr(TokenStore, "gather", reference_gather)
            ref.setattr(plan, "BLOCK_TOKENS", 1 << 40)  # one block per piece
            ref.setattr(plan, "GATHER_THREADS", 0)  # gathered in the caller
            ref.setattr(base, "BACKGROUND", False)
            expected = _write(store, case, root / "reference")
        mp.setattr(plan, "BLOCK_TOKENS", case["block"])
        mp.setattr(plan, "GATHER_THREADS", case["threads"])
        mp.setattr(base, "BACKGROUND", True)
        mp.setattr(base, "QUEUE_DEPTH", case["queue"])
        mp.setattr(base, "SYNC_BYTES", case["sync"])
        got = _write(store, case, root / "fast")
        assert type(got) is type(expected)
        if isinstance(expected, str):
            assert got == expected
            return
        assert got == expected  # shards.json: the same cuts, sizes and digests
        assert tree_bytes(root / "fast") == tree_bytes(root / "reference")
        assert verify_shards(root / "fast") == []


def _case(**kw) -> dict:
    case = {"vocab": 300, "mode": "samples", "bos": None, "eos": EOS, "unit": 4, "lens": [3, 7, 11, 0],
            "order": [0, 1, 2, 3, 2, 1, 0, 1, 2], "shard_tokens": 24, "block": 1, "piece": 1 << 22, "queue": 1,
            "sync": 512, "threads": 2, "seed": 0}
    return {**case, **kw}


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(boundary_cases())
@example(_case())  # several blocks per piece: Parquet row groups
@example(_case(mode="pack", bos=BOS, eos=EOS, block=5, piece=20))  # --pack rows across blocks and pieces
@example(_case(mode="align", vocab=70_000, block=4, shard_tokens=8))  # windows and shards on sample ends
def test_fast_path_writes_the_reference_bytes(case):
    _check_same_bytes(case)


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(boundary_cases())
def test_fast_path_writes_the_reference_bytes_many(case):
    _check_same_bytes(case)


@settings(max_examples=60, deadline=None)
@given(lens=st.lists(st.one_of(st.none(), st.integers(0, 70)), min_size=1, max_size=12),
       picks=st.lists(st.integers(0, 11), max_size=60),
       vocab=st.sampled_from([300, 70_000]),
       delims=st.sampled_from([(None, EOS), (BOS, None), (BOS, EOS), (None, None)]),
       out_dtype=st.sampled_from([None, np.int64, np.int32]),
       seed=st.integers(0, 2**16))
def test_gather_is_the_documents_concatenated(lens, picks, vocab, delims, out_dtype, seed):
    """``TokenStore.gather`` (vectorised) equals the per-document concatenation, untokenized
    documents included (a ``KeyError`` both ways), whatever the sizes and delimiters."""
    rng = np.random.default_rng(seed)
    docs = [None if n is None else rng.integers(3, vocab, size=n) for n in lens]
    doc_ids = np.asarray([p % len(docs) for p in picks], dtype=np.int64)
    bos, eos = delims
    with tempfile.TemporaryDirectory() as tmp:
        store = synthetic_store(Path(tmp) / "store", docs, vocab)
        try:
            expected = reference_gather(store, doc_ids, eos, out_dtype, bos_id=bos)
        except KeyError:
            with pytest.raises(KeyError):
                store.gather(doc_ids, eos, out_dtype, bos_id=bos)
            return
        tokens, sizes = store.gather(doc_ids, eos, out_dtype, bos_id=bos)
        assert tokens.dtype == expected[0].dtype and np.array_equal(tokens, expected[0])
        assert np.array_equal(sizes, expected[1])


def test_a_write_error_in_the_thread_is_raised_and_nothing_is_left(tmp_path, monkeypatch):
    """A failing write in a file's thread (a full disk) surfaces in the caller and leaves no file."""
    path = tmp_path / "d" / "x.bin"
    f = base.HashedFile(path, background=True)
    calls = {"n": 0}
    real = f.f

    class Failing:
        def write(self, data):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(28, "No space left on device")
            return real.write(data)

        def fileno(self):
            return real.fileno()

        def close(self):
            real.close()

    f.f = Failing()
    f.write(b"a" * 4096)
    f.write(b"b" * 4096)
    with pytest.raises(OSError, match="No space"):
        for _ in range(100):  # raised by a later write or by commit, never lost
            f.write(b"c" * 4096)
        f.commit()
    f.abort()
    assert not path.exists() and list(path.parent.iterdir()) == []
