"""The accounting invariant of embed and merge, as a property over sizes and settings.

For any corpus size, window, part, partition count and partition block: every input row becomes a
document or a counted skip, the parts hold exactly the documents read (in input order), and merging
the partitions gives the one-shot directory. Sizes are drawn near multiples of the window and part
sizes, where boundaries hide (an earlier version lost the last window whenever the documents after
the last part boundary were an exact multiple of --window-docs).
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterclip.embed import EmbedDir, embed_corpus, merge_embeddings
from clusterclip.embed.hf import HFEncoder

from helpers import write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder():
    return HFEncoder(max_length=8, device="cpu", dtype="float32")


def corpus_size(window: int, part: int):
    near = st.builds(lambda a, b, c: a * part + b * window + c, st.integers(0, 3), st.integers(0, 3),
                     st.integers(-1, 1))
    return st.one_of(st.integers(1, 40), near).filter(lambda n: 1 <= n <= 60)


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(window=st.integers(1, 6), part=st.integers(1, 9), partitions=st.integers(1, 3), block=st.integers(1, 5),
       data=st.data())
def test_every_input_row_is_a_document_or_a_counted_skip(tmp_path_factory, encoder, window, part, partitions,
                                                         block, data):
    n = data.draw(corpus_size(window, part), label="rows")
    empties = data.draw(st.sets(st.integers(0, n - 1), max_size=max(0, (n - 1) // 3)), label="empty rows")
    root = tmp_path_factory.mktemp("acct")
    texts = ["  " if i in empties else f"document {i} about topic {i % 5}" for i in range(n)]
    corpus = write_jsonl(root / "c.jsonl", [{"text": t} for t in texts])
    kw = dict(encoder=encoder, part_docs=part, window_docs=window, progress=False)
    one = embed_corpus([corpus], root / "one", **kw)
    acct = one.manifest["accounting"]
    kept = [i for i, t in enumerate(texts) if t.strip()]
    assert acct["input_rows"] == n == acct["documents"] + acct["skipped"]["empty"]
    assert one.statistics["n_docs"] == len(kept) == acct["documents"]
    assert one.statistics["parts"] == -(-len(kept) // part) and sum(one.statistics["part_rows"]) == len(kept)
    emb = EmbedDir(root / "one", verify=True)
    assert emb.store().n == len(kept)
    assert pq.read_table(emb.docs_file()).column("row").to_pylist() == kept
    if partitions == 1:
        return
    dirs = []
    for i in range(partitions):
        r = embed_corpus([corpus], root / f"p{i}", num_partitions=partitions, partition_index=i,
                         partition_block=block, **kw)
        a = r.manifest["accounting"]
        assert a["input_rows"] == n == a["documents"] + a["skipped"]["empty"] + a["other_partitions"]
        dirs.append(root / f"p{i}")
    merged = merge_embeddings(dirs, root / "merged", progress=False)
    assert merged.statistics["n_docs"] == len(kept)
    assert (root / "merged" / "docs.parquet").read_bytes() == (root / "one" / "docs.parquet").read_bytes()
    x, y = EmbedDir(root / "merged").store(), emb.store()
    np.testing.assert_allclose(x.read(0, x.n), y.read(0, y.n), atol=1e-5)
