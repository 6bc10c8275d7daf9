"""Keywords of a cluster: the terms that are frequent in its documents and rare in the others (TF-IDF).

For cluster ``c`` with ``n_c`` sampled documents and a term ``t``:

- ``tf(t, c)`` is the mean over the cluster's sampled documents of the sublinear term frequency
  ``1 + log(count of t in the document)`` (0 where absent), so one long document repeating a
  word cannot make it a keyword;
- ``idf(t) = log((1 + n) / (1 + df(t))) + 1`` over all ``n`` sampled documents of every cluster
  (``df``: the documents containing ``t``), the smoothed form scikit-learn uses;
- the score is ``tf × idf``; a term must occur in at least two of the cluster's documents when
  the cluster has three or more, so a word of one document alone is not a keyword.

Tokens are lowercase words (letters, digits and inner underscores, starting with a letter, at
least 2 characters) of the first :data:`MAX_CHARS` characters of a document, minus
:data:`STOP_WORDS`: common English plus the boilerplate of code documentation ("return",
"default", "argument", ...). Documents are counted as they stream in
(:class:`KeywordCounter`), so texts are never held in memory.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

import numpy as np

TOKEN = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
MAX_CHARS = 10_000  # keywords read the start of each document only, so one huge document costs no more

_ENGLISH = """
a about above after again against all almost along already also although always am among an and another
any anyone anything are around as at back be became because become becomes been before being below
between both but by can cannot could did do does doing done down during each either else enough etc
even ever every few for from further get gets getting give given gives go goes got had has have having he
her here hers herself him himself his how however i ie if in instead into is it its itself just keep
least less let like likely made make makes many may me might more most much must my myself need needs
neither never no nor not now of off often on once one only onto or other others otherwise our ours
ourselves out over own per perhaps put rather really same see seen several shall she should show shown
since so some something sometimes still such than that the their theirs them themselves then there
therefore these they this those though through thus to together too toward towards under unless until
up upon us very via was way we well were what whatever when whenever where whether which while who whom
whose why will with within without would yet you your yours yourself yourselves eg e g etc vs
"""

# Words every piece of code documentation uses, whatever it is about.
_DOCSTRING = """
arg args argument arguments kwarg kwargs param params parameter parameters optional optionally
return returns returned returning none true false default defaults value values object objects
function functions method methods class classes instance instances self cls type types use used uses
using usage call called calls calling raise raises raised new set sets specified specify specifies
given case cases note notes example examples also see following follows first second two three
number otherwise whether either include includes including included support supports supported
provide provides provided result results attribute attributes name names data string str int
keyword keywords create creates created list lists dict item items version added changed deprecated
implementation implement implements implemented work works possible available current currently
instead specific specified way different same just based useful simple simply
"""

STOP_WORDS = frozenset((_ENGLISH + _DOCSTRING).split())


def tokenize(text: str) -> list[str]:
    """Lowercase words of the first :data:`MAX_CHARS` characters of ``text``, without stop words."""
    return [t for t in TOKEN.findall(text[:MAX_CHARS].lower()) if len(t) > 1 and t not in STOP_WORDS]


class KeywordCounter:
    """Count terms per cluster as documents stream in; then rank each cluster's terms by TF-IDF."""

    def __init__(self, flush_tokens: int = 1 << 21):
        self.vocab: dict[str, int] = {}
        self.flush_tokens = flush_tokens
        self._terms: list[int] = []  # term ids of the buffered documents, document after document
        self._doc_lengths: list[int] = []  # tokens of each buffered document
        self._doc_cluster: list[int] = []
        # running sums, keyed by cluster << 32 | term
        self._keys: np.ndarray = np.zeros(0, np.int64)
        self._tf: np.ndarray = np.zeros(0, np.float64)
        self._df_in_cluster: np.ndarray = np.zeros(0, np.int64)
        self._docs_per_cluster: dict[int, int] = {}

    def add(self, cluster: int, text: str) -> None:
        """Count one document of ``cluster``."""
        vocab = self.vocab
        tokens = tokenize(text)
        try:
            ids = [vocab[t] for t in tokens]
        except KeyError:  # a word not seen before
            ids = [vocab.setdefault(t, len(vocab)) for t in tokens]
        self._doc_cluster.append(int(cluster))
        self._docs_per_cluster[int(cluster)] = self._docs_per_cluster.get(int(cluster), 0) + 1
        self._terms.extend(ids)
        self._doc_lengths.append(len(ids))
        if len(self._terms) >= self.flush_tokens:
            self._flush()

    def _flush(self) -> None:
        if not self._doc_cluster:
            return
        terms = np.asarray(self._terms, np.int64)
        docs: np.ndarray = np.repeat(np.arange(len(self._doc_lengths), dtype=np.int64), self._doc_lengths)
        doc_cluster = np.asarray(self._doc_cluster, np.int64)
        self._terms, self._doc_lengths, self._doc_cluster = [], [], []
        if not len(terms):
            return
        doc_term, counts = np.unique(docs << 32 | terms, return_counts=True)
        tf = 1.0 + np.log(counts)
        cluster_term = doc_cluster[doc_term >> 32] << 32 | (doc_term & 0xFFFFFFFF)
        keys = np.concatenate([self._keys, cluster_term])
        tf = np.concatenate([self._tf, tf])
        df = np.concatenate([self._df_in_cluster, np.ones(len(cluster_term), np.int64)])
        self._keys, inverse = np.unique(keys, return_inverse=True)
        self._tf = np.bincount(inverse, weights=tf, minlength=len(self._keys))
        self._df_in_cluster = np.bincount(inverse, weights=df, minlength=len(self._keys)).astype(np.int64)

    def top_terms(self, n_terms: int) -> dict[int, list[str]]:
        """``cluster -> its n_terms best keywords`` (best first; ties by the term itself)."""
        self._flush()
        if not len(self._keys):
            return {c: [] for c in self._docs_per_cluster}
        words = sorted(self.vocab)
        alphabetical: np.ndarray = np.empty(len(words), np.int64)  # term id -> rank of the word in A-Z order
        alphabetical[[self.vocab[w] for w in words]] = np.arange(len(words))
        cluster = self._keys >> 32
        term = self._keys & 0xFFFFFFFF
        n_docs = sum(self._docs_per_cluster.values())
        df = np.bincount(term, weights=self._df_in_cluster, minlength=len(self.vocab))
        idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
        ids = np.array(sorted(self._docs_per_cluster), np.int64)
        docs_in_cluster = np.array([self._docs_per_cluster[c] for c in ids.tolist()], np.float64)
        size = docs_in_cluster[np.searchsorted(ids, cluster)]
        score = self._tf / size * idf[term]
        eligible = (self._df_in_cluster >= 2) | (size < 3)
        out: dict[int, list[str]] = {c: [] for c in self._docs_per_cluster}
        # best first within each cluster: sort by cluster, then score descending, then the word
        order = np.lexsort((alphabetical[term], -score, cluster))
        order = order[eligible[order]]
        bounds = np.r_[0, np.flatnonzero(np.diff(cluster[order])) + 1, len(order)]
        for lo, hi in itertools.pairwise(bounds):
            if hi > lo:
                out[int(cluster[order[lo]])] = [words[alphabetical[t]] for t in term[order[lo:min(hi, lo + n_terms)]]]
        return out


def top_keywords(docs_by_cluster: dict[int, Iterable[str]], n_terms: int = 10) -> dict[int, list[str]]:
    """Keywords of each cluster from its documents' texts (all clusters form the reference corpus)."""
    counter = KeywordCounter()
    for cluster, texts in docs_by_cluster.items():
        for text in texts:
            counter.add(cluster, text)
    return counter.top_terms(n_terms)
