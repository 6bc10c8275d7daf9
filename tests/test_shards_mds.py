"""``mds`` shards read back by the real ``streaming.StreamingDataset`` (mosaicml-streaming 0.13.0).

The reader lives in a separate environment (``.venv-mds``, built by
``scripts/setup_mds_env.sh``; mosaicml-streaming pins numpy<2.2 and transformers<5), so the test
runs ``tests/mds_reader_check.py`` there in a subprocess and compares what it yields, directly
and through a 2-worker DataLoader, token for token with the order.

Without the environment the test is skipped, saying how to build it; with ``CI`` or
``CLUSTERCLIP_BUILD_MDS_ENV=1`` set it builds it first (about a minute, PyPI only), and with
``CLUSTERCLIP_REQUIRE_MDS=1`` a missing environment fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clusterclip.shards import read_sample

from shards_testlib import big_vocab_tokenizer, build_all, mds_python, stdlib_docstrings, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "tests" / "mds_reader_check.py"
SETUP = ROOT / "scripts" / "setup_mds_env.sh"


def _env_python() -> str:
    py = mds_python()
    if py is None and (os.environ.get("CI") or os.environ.get("CLUSTERCLIP_BUILD_MDS_ENV") == "1"):
        r = subprocess.run(["bash", str(SETUP)], cwd=ROOT, capture_output=True, text=True, timeout=600)
        py = mds_python()
        if py is None:
            reason = (r.stderr or r.stdout).strip().splitlines()[-3:]
            _missing(f"scripts/setup_mds_env.sh failed: {' | '.join(reason)}")
    if py is None:
        _missing("no .venv-mds: run `bash scripts/setup_mds_env.sh` (or `make mds-env`) to build the "
                 "MosaicML Streaming reader environment")
    return py


def _missing(reason: str):
    if os.environ.get("CLUSTERCLIP_REQUIRE_MDS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def texts():
    return stdlib_docstrings(300)


def _read_with_streaming(py: str, mds_dirs: list[Path], tmp: Path) -> dict:
    out = tmp / "streaming.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    r = subprocess.run([py, str(CHECK), str(out), *map(str, mds_dirs), "--workers", "2", "--batch-size", "4"],
                       cwd=tmp, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, f"mds_reader_check.py failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return json.loads(out.read_text())


def _expected_items(b, dtype: str) -> list:
    return [[int(d), int(c), int(r), dtype, e.tolist()]
            for d, c, r, e in zip(b.doc_ids, b.cluster, b.repeat, b.expected)]


@pytest.fixture(scope="module")
def read_back(tmp_path_factory, texts):
    """Both vocabularies' MDS shards, read in one run of the reader environment."""
    py = _env_python()
    root = tmp_path_factory.mktemp("mds")
    built = {
        "uint16": build_all(root / "small", train_tokenizer(root / "small" / "tokenizer.json", texts), texts,
                            n_samples=400, seed=2, formats=("mds",)),
        "int32": build_all(root / "big", big_vocab_tokenizer(root / "big" / "tokenizer.json", texts), texts,
                           n_samples=200, seed=3, formats=("mds",)),
    }
    got = _read_with_streaming(py, [b.out / "mds" for b in built.values()], root)
    return built, got


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["uint16", "int32"])
def test_mds_read_by_streaming_dataset(read_back, dtype):
    built, got = read_back
    b = built[dtype]
    assert got["streaming_version"] == "0.13.0"
    n_shards = b.index["n_shards"]
    assert n_shards >= 4 and len(list((b.out / "mds").glob("shard.*.mds"))) == n_shards
    res = got["datasets"][str(b.out / "mds")]
    expected = _expected_items(b, dtype)
    assert res["len"] == len(expected)
    assert res["direct"] == expected
    assert res["dataloader"] == expected  # 2 workers, shuffle=False: still the order
    assert res["random_access_last"] == expected[-1]
    # our own decoder of the layout agrees too
    for i in (0, len(expected) // 2, len(expected) - 1):
        assert np.array_equal(read_sample(b.out, "mds", i), b.expected[i])


@pytest.mark.slow
def test_mds_packed_rows_read_by_streaming_dataset(tmp_path, texts):
    """--pack L: rows of exactly L tokens, in order, with their pieces' positions and cu_seqlens."""
    from clusterclip.shards import write_shards

    py = _env_python()
    b = build_all(tmp_path / "small", train_tokenizer(tmp_path / "small" / "tokenizer.json", texts), texts,
                  n_samples=150, seed=4, formats=("bin",))
    L = 64
    out = tmp_path / "packed"
    write_shards(b.doc_ids, b.cluster, b.repeat, b.store, out, formats=("mds",), shard_tokens=L * 7,
                 eos_id=b.tok.eos_id, vocab_size=b.tok.vocab_size, pack=L, progress=False)
    got = _read_with_streaming(py, [out / "mds"], tmp_path)["datasets"][str(out / "mds")]
    stream = np.concatenate(b.expected)
    for key in ("direct", "dataloader"):
        rows = got[key]
        assert all(r[0] == "packed" and len(r[4]) == L and r[3] == "uint16" for r in rows)
        flat = np.concatenate([r[4] for r in rows])
        assert np.array_equal(flat[: len(stream)], stream) and (flat[len(stream):] == b.tok.eos_id).all()
        starts = np.cumsum([0] + [len(x) for x in b.expected[:-1]])
        bounds = {i * L + c for i, r in enumerate(rows) for c in r[2][:-1]}
        assert set(starts.tolist()) <= bounds
        assert rows[0][1][0] == 0 and rows[-1][1][-1] == -1 or len(stream) % L == 0
