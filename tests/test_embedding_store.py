"""``EmbeddingStore``: the embeddings parts read as one matrix by positioned reads (no memory map).

What cluster, merge, incremental and dedup rely on: ``read`` and ``take`` return exactly the rows of
the parts (float16 or float32, any part sizes, any rows in any order with repeats, however the spans
are cut), and a reader keeps nothing of what it read: no part stays mapped or open, so resident
memory is the caller's arrays, not the parts read (issue 27.4: cluster kept 2.2 GB resident at 1 M
documents through two memory maps of the same 1 GB of parts).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterclip.embed.store import EmbeddingStore
from clusterclip.errors import IntegrityError


def write_parts(root: Path, sizes: list[int], dim: int, dtype: str, seed: int = 0) -> tuple[list[Path], np.ndarray]:
    """Parts of ``sizes`` rows (``dtype``: ``<f2``, ``<f4`` or ``>f4``); their concatenation as float32."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    files, whole = [], []
    for k, n in enumerate(sizes):
        x = rng.standard_normal((n, dim)).astype(dtype)
        path = root / f"embeddings-{k:05d}.npy"
        np.save(path, x)
        files.append(path)
        whole.append(x.astype(np.float32))
    return files, np.concatenate(whole) if whole else np.zeros((0, dim), np.float32)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=6), dim=st.integers(1, 9),
       dtype=st.sampled_from(["<f4", "<f2", ">f4"]), span_rows=st.integers(1, 50), gap_rows=st.integers(1, 20),
       data=st.data())
def test_read_and_take_return_exactly_the_rows_of_the_parts(tmp_path_factory, sizes, dim, dtype, span_rows, gap_rows,
                                                            data):
    files, whole = write_parts(tmp_path_factory.mktemp("parts"), sizes, dim, dtype)
    n = len(whole)
    with mock.patch.object(EmbeddingStore, "SPAN_BYTES", span_rows * dim * 4), \
            mock.patch.object(EmbeddingStore, "GAP_BYTES", gap_rows * dim * 4):
        store = EmbeddingStore(files, sizes)
        assert store.n == n and store.dim == dim
        a = data.draw(st.integers(0, n))
        b = data.draw(st.integers(a, n))
        np.testing.assert_array_equal(store.read(a, b), whole[a:b])
        if n:
            rows = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=3 * n)), dtype=np.int64)
            got = store.take(rows)
            assert got.dtype == np.float32 and got.shape == (len(rows), dim)
            np.testing.assert_array_equal(got, whole[rows])
            r = pickle.loads(pickle.dumps(store.rows(a, b)))  # what an engine task gets
            np.testing.assert_array_equal(r.read(0, b - a), whole[a:b])


def test_a_reader_keeps_no_part_mapped_or_open(tmp_path):
    files, whole = write_parts(tmp_path, [300, 0, 500, 200], 64, "<f4")
    store = EmbeddingStore(files)
    np.testing.assert_array_equal(store.read(0, store.n), whole)
    rows = np.random.default_rng(1).choice(store.n, 400)
    np.testing.assert_array_equal(store.take(rows), whole[rows])
    names = {str(f.resolve()) for f in files}
    maps = Path(f"/proc/{os.getpid()}/maps").read_text()
    assert not [line for line in maps.splitlines() if line.split()[-1] in names]
    open_files = {os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")}
    assert not names & open_files


def test_a_truncated_part_is_one_line_naming_it(tmp_path):
    files, _ = write_parts(tmp_path, [10, 10], 4, "<f4")
    store = EmbeddingStore(files)
    with open(files[1], "r+b") as f:
        f.truncate(files[1].stat().st_size - 8)
    with pytest.raises(IntegrityError, match=r"embeddings-00001\.npy: ends before row 9"):
        store.read(0, 20)
    with pytest.raises(IntegrityError, match=r"embeddings-00001\.npy"):
        store.take(np.array([19]))


def test_a_part_that_is_not_a_float_matrix_is_refused(tmp_path):
    np.save(tmp_path / "embeddings-00000.npy", np.zeros((3, 2), dtype=np.int32))
    with pytest.raises(IntegrityError, match="not a C-ordered float array"):
        EmbeddingStore([tmp_path / "embeddings-00000.npy"])
    np.save(tmp_path / "embeddings-00000.npy", np.asfortranarray(np.zeros((3, 2), dtype=np.float32)))
    with pytest.raises(IntegrityError, match="fortran_order=True"):
        EmbeddingStore([tmp_path / "embeddings-00000.npy"])
