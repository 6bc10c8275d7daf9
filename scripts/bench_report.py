"""Benchmark ``clusterclip report`` on a synthetic corpus with planted topics.

A corpus of N documents in T topics is written as Parquet (columns ``id``, ``text``; each text
mixes words of its topic with words common to all topics), with an ``embed`` directory whose
vectors are noisy copies of one direction per topic (no model runs: embedding is not what is
measured). Then ``cluster`` (k = T) and ``schedule --dry-run`` run for real, and the report is
timed against a peer measured in the same run: reading every text of the corpus once through
``EmbedDir.texts`` (the floor of any report that looks at all documents; the
report reads only its sample, at most 200 documents per cluster and 200,000 in all).

Usage::

    python scripts/bench_report.py                      # N = 100,000 documents, 1,000 topics
    python scripts/bench_report.py --n-docs 20000 --topics 100 --keep work/bench-report

The report and the peer each run in a fresh interpreter; it prints their wall times, the
ratio, their peak resident memory and whether each cluster's top keywords are words of its
planted topic.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from clusterclip.artifacts import (
    build_manifest,
    file_record,
    save_npy_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from clusterclip.artifacts.corpus import describe_files

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pu", "da", "fe", "go", "hi", "ju", "be"]


def pseudo_words(n: int, seed: int) -> list[str]:
    """``n`` distinct lowercase pseudo-words of a few syllables (readable, not English, no stop words)."""
    rng = np.random.default_rng(seed)
    length = 3 if n <= len(SYLLABLES) ** 3 // 4 else 4 if n <= len(SYLLABLES) ** 4 // 4 else 5
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < n:
        w = "".join(SYLLABLES[i] for i in rng.integers(0, len(SYLLABLES), length))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return words


def planted_corpus(n_docs: int, n_topics: int, *, topic_words: int = 8, common_words: int = 300,
                   words_per_doc: int = 40, topic_fraction: float = 0.25, seed: int = 0):
    """Texts with planted topics: returns ``(texts, topic of each text, words of each topic)``.

    Topic sizes are log-normal (unbalanced, as real corpora); each text draws
    ``topic_fraction`` of its words from its topic's ``topic_words`` words and the rest from
    ``common_words`` words shared by all topics.
    """
    rng = np.random.default_rng(seed)
    vocab = pseudo_words(n_topics * topic_words + common_words, seed)
    topics = [vocab[t * topic_words:(t + 1) * topic_words] for t in range(n_topics)]
    common = np.array(vocab[n_topics * topic_words:])
    weights = rng.lognormal(0.0, 1.0, n_topics)
    sizes = 1 + np.floor(weights / weights.sum() * (n_docs - n_topics)).astype(np.int64)
    sizes[np.argmax(sizes)] += n_docs - sizes.sum()
    topic_of = rng.permutation(np.repeat(np.arange(n_topics), sizes))
    n_topic = max(1, round(words_per_doc * topic_fraction))
    common_draws = rng.integers(0, len(common), (n_docs, words_per_doc - n_topic))
    topic_draws = rng.integers(0, topic_words, (n_docs, n_topic))
    texts = []
    for i in range(n_docs):
        words = list(common[common_draws[i]]) + [topics[topic_of[i]][j] for j in topic_draws[i]]
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + ".")
    return texts, topic_of, topics


def write_embed_dir(out: Path, corpus: Path, texts: list[str], vectors: np.ndarray, ids: list[str],
                    extra: dict | None = None) -> Path:
    """Write ``corpus`` (Parquet: id, text and the ``extra`` columns) and an ``embed`` directory for it holding
    ``vectors``.

    The directory follows docs/ARCHITECTURE.md (docs.parquet, embeddings-00000.npy, manifest.json with
    the corpus digest, text and id columns), so every later step and ``EmbedDir.texts`` accept it.
    """
    corpus.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": ids, "text": texts, **(extra or {})}), corpus, row_group_size=65536)
    out.mkdir(parents=True, exist_ok=True)
    n = len(texts)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    save_npy_atomic(out / "embeddings-00000.npy", vectors.astype(np.float32))
    write_parquet_atomic(out / "docs.parquet", pa.table({
        "doc_id": pa.array(np.arange(n, dtype=np.int64)),
        "source": pa.array([str(corpus.resolve())] * n),
        "row": pa.array(np.arange(n, dtype=np.int64)),
        "n_chars": pa.array(np.array([len(t) for t in texts], np.int64)),
        "id": pa.array(ids),
    }))
    settings = {"text_column": "text", "id_column": "id", "model": "synthetic (planted topics)", "max_length": 0}
    stats = {"n_docs": n, "dim": int(vectors.shape[1]), "skipped_empty": 0, "part_rows": [n]}
    records, stat_cache = describe_files([corpus.resolve()])
    manifest = build_manifest("embed", settings, {"files": records},
                              [file_record(out, name) for name in ("docs.parquet", "embeddings-00000.npy")], stats,
                              extra={"corpus_stat": stat_cache})
    write_json_atomic(out / "manifest.json", manifest)
    return out


def topic_vectors(topic_of: np.ndarray, n_topics: int, dim: int, noise: float = 0.3, seed: int = 0) -> np.ndarray:
    """One random unit direction per topic plus Gaussian noise (``noise / sqrt(dim)`` per coordinate)."""
    rng = np.random.default_rng(seed + 1)
    centres = rng.standard_normal((n_topics, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return centres[topic_of] + noise / np.sqrt(dim) * rng.standard_normal((len(topic_of), dim)).astype(np.float32)


def build_pipeline(work: Path, n_docs: int, n_topics: int, dim: int, seed: int = 0):
    """Corpus, embed, cluster (k = topics) and a dry-run schedule under ``work``; returns their paths and topics."""
    from clusterclip.cluster import cluster_embeddings
    from clusterclip.schedule import schedule_corpus

    texts, topic_of, topics = planted_corpus(n_docs, n_topics, seed=seed)
    ids = [f"doc-{i}" for i in range(n_docs)]
    emb = write_embed_dir(work / "emb", work / "corpus" / "corpus.parquet", texts,
                          topic_vectors(topic_of, n_topics, dim, seed=seed), ids)
    cl = work / "cl"
    cluster_embeddings(emb, cl, k=n_topics, seed=seed, progress=False)
    sched = work / "sched"
    schedule_corpus(emb, cl, sched, dry_run=True, epochs=2, max_repeats=4, allow_partial=True, progress=False)
    (work / "topics.json").write_text(json.dumps(topics))
    np.save(work / "topic_of.npy", topic_of)
    return emb, cl, sched, topic_of, topics


# Peak memory is VmHWM of /proc/self/status (KiB): unlike getrusage's ru_maxrss it is not
# inherited from the parent across fork + exec.
PEAK_RSS = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"

REPORT_CODE = f"""
import sys, time
from clusterclip.report import build_report
start = time.perf_counter()
build_report(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], overwrite=True)
print(time.perf_counter() - start, {PEAK_RSS})
"""

PEER_CODE = f"""
import sys, time
import numpy as np
from clusterclip.embed import EmbedDir
start = time.perf_counter()
n_chars = sum(len(t) for _, t in EmbedDir(sys.argv[1]).texts(np.arange(int(sys.argv[2]))))
print(time.perf_counter() - start, {PEAK_RSS}, n_chars)
"""


def run_fresh(code: str, *args) -> list[float]:
    """Run ``code`` in a fresh interpreter (so its peak memory is its own); return the numbers it prints."""
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True, capture_output=True, text=True)
    return [float(x) for x in out.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-docs", type=int, default=100_000)
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--keep", type=Path, default=None,
                        help="build under this directory and keep it (reused when it already holds the pipeline)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        if not (work / "sched" / "manifest.json").exists():
            start = time.perf_counter()
            build_pipeline(work, args.n_docs, args.topics, args.dim)
            print(f"corpus + embed dir + cluster + schedule --dry-run: {time.perf_counter() - start:.1f}s "
                  f"({args.n_docs:,} documents, {args.topics:,} topics)")
        emb, cl, sched, report = work / "emb", work / "cl", work / "sched", work / "report"
        n_docs = json.loads((emb / "manifest.json").read_text())["statistics"]["n_docs"]
        peer, peer_rss, n_chars = run_fresh(PEER_CODE, emb, n_docs)
        seconds, rss = run_fresh(REPORT_CODE, emb, cl, sched, report)
        print(f"peer: read every text once (read_texts, {n_docs:,} documents, {n_chars / 1e6:.1f} M characters): "
              f"{peer:.2f}s, peak RSS {peer_rss / 1024:.0f} MiB")
        print(f"report: {seconds:.2f}s = {seconds / peer:.1f}x the peer, peak RSS {rss / 1024:.0f} MiB "
              f"-> {report / 'index.html'}")

        table = json.loads((report / "report.json").read_text())["table"]
        print(f"keywords from {table['sampled_docs']:,} sampled documents "
              f"(up to {table['sample_docs_per_cluster']} per cluster)")
        if (work / "topics.json").exists():
            topics = json.loads((work / "topics.json").read_text())
            topic_of = np.load(work / "topic_of.npy")
            assignments = pq.read_table(cl / "assignments.parquet", columns=["cluster"]).column(0).to_numpy()
            good = 0
            for row in table["clusters"]:
                members = topic_of[assignments == row["cluster"]]
                if len(members):
                    planted = set(topics[np.bincount(members).argmax()])
                    good += bool(row["keywords"]) and set(row["keywords"][:3]) <= planted
            print(f"clusters whose top 3 keywords are words of their majority topic: {good} of {len(table['clusters'])}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
