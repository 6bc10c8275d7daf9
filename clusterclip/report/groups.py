"""``report --group-by COLUMN``: every document's group (a column of ``docs.parquet``, e.g. ``source``, or of
the corpus, e.g. a product or language field), so the report can add up clusters by what the corpus says its
documents are.

A cluster mixes groups, so groups are counted per document: a sample counts for the group of its document. What
the law asks for and expects per group is its clusters' asked and expected samples spread evenly over each
cluster's documents (every document of a cluster is drawn equally often in expectation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from ..embed.directory import EmbedDir
from ..errors import InputError

#: a column with more distinct values is refused (it names documents, not groups of them)
MAX_GROUPS = 10_000
#: the value of documents whose column is empty or missing
MISSING = "(none)"


@dataclass(frozen=True)
class Groups:
    """The group of every document: ``of_doc[d]`` indexes ``names``."""

    column: str
    names: list[str]
    of_doc: np.ndarray  # int32 [N]

    @property
    def n(self) -> int:
        return len(self.names)

    def matrix(self, labels: np.ndarray, sizes: np.ndarray):
        """``[K, G]`` (scipy sparse): the share of cluster ``k``'s documents in group ``g`` (rows sum to 1)."""
        from scipy.sparse import coo_matrix

        k = len(sizes)
        pairs = np.asarray(labels, np.int64) * self.n + self.of_doc
        keys, counts = np.unique(pairs, return_counts=True)
        rows, cols = keys // self.n, keys % self.n
        share = counts / np.maximum(np.asarray(sizes, np.float64)[rows], 1)
        return coo_matrix((share, (rows, cols)), shape=(k, self.n)).tocsr()

    def spread(self, per_cluster: np.ndarray, matrix) -> np.ndarray:
        """Per-cluster quantities (``[..., K]``) spread evenly over each cluster's documents and added up per group."""
        return np.asarray(matrix.T.dot(np.asarray(per_cluster, np.float64).T).T)

    def documents(self) -> np.ndarray:
        return np.bincount(self.of_doc, minlength=self.n)


def read_groups(emb: EmbedDir, column: str) -> Groups:
    """The groups of ``column``: a column of ``docs.parquet`` when it has one of that name (``source`` names the
    corpus file; shown by its file name), else a column of the corpus read back from its files."""
    flag = f"--group-by {column}"
    names = emb.docs_columns()
    codes: dict = {}
    of_doc: np.ndarray = np.empty(emb.n_docs, np.int32)
    if column in names and column != "doc_id":
        values = emb.docs_table([column]).column(0).to_pylist()
        _encode(values, 0, of_doc, codes, flag)
    else:
        from ..schedule.mixing import iter_corpus_column

        for start, values, _, _ in iter_corpus_column(emb, column, flag):
            _encode(values, start, of_doc, codes, flag)
    labels = [_label(v, column) for v in codes]
    return Groups(column, labels, of_doc)


def _encode(values: list, start: int, of_doc: np.ndarray, codes: dict, flag: str) -> None:
    for j, value in enumerate(values):
        key = MISSING if value is None or value == "" else value if isinstance(value, (str, int, float, bool)) \
            else str(value)
        code = codes.get(key)
        if code is None:
            if len(codes) >= MAX_GROUPS:
                raise InputError(f"{flag}: more than {MAX_GROUPS:,} distinct values; group by a column that "
                                 f"names groups of documents (a source, a product, a language), not one per document")
            code = codes[key] = len(codes)
        of_doc[start + j] = code


def _label(value, column: str) -> str:
    return PurePath(value).name if column == "source" and isinstance(value, str) and value != MISSING else str(value)
