"""How well the documents of ``cluster --assign-only`` fit the centroids they were given.

Assigning never refuses a document: each goes to its nearest old centroid, however far. So the
step compares the cosine of every new document to its centroid with that of the documents the
centroids were made for (CL_OLD's own assignments), records both distributions in the manifest
(``statistics.assign_only.fit``) and warns, with the figures, when the new documents are much
further from their centroids than the old ones: they form a topic the clustering does not
have, and only re-clustering gives them clusters of their own.

The rule (stated in the warning and the README): documents that fit the old clusters fall below
the old documents' 5th percentile about 5 % of the time; the new documents are said not to fit
when at least :data:`MIN_SHARE_BELOW` of them (and :data:`MIN_DOCS_BELOW` documents) do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ClusterClipError

#: the quantiles recorded for each distribution (also the keys: ``p01`` ... ``p99``)
QUANTILES = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99)
#: the old documents' quantile new documents are compared with
REFERENCE_QUANTILE = 0.05
#: share of the new documents below the reference that makes them "not fit" (5x what fitting documents give)
MIN_SHARE_BELOW = 0.25
#: ... and at least this many documents
MIN_DOCS_BELOW = 5


def describe(similarity: np.ndarray) -> dict | None:
    """``n``, ``mean``, ``min``, ``max`` and the :data:`QUANTILES` of a similarity array (None when empty)."""
    s = np.asarray(similarity, np.float64)
    if s.size == 0:
        return None
    q = np.quantile(s, QUANTILES)
    return {"n": int(s.size), "mean": round(float(s.mean()), 6), "min": round(float(s.min()), 6),
            "max": round(float(s.max()), 6), "quantiles": {_key(p): round(float(v), 6) for p, v in zip(QUANTILES, q)}}


def _key(p: float) -> str:
    return f"p{round(p * 100):02d}"


def fit_record(new_similarity: np.ndarray, old_similarity: np.ndarray, new_documents: np.ndarray | None,
               how: str) -> dict:
    """The manifest's ``fit``: the distributions of the new and the old documents and the verdict.

    ``new_similarity``: every document of this run; ``old_similarity``: the documents CL_OLD
    assigned; ``new_documents``: a boolean mask of the documents new to the clustering (None when
    they cannot be told apart: then every document is compared); ``how``: how they were told apart.
    """
    old = describe(old_similarity)
    new_sim = new_similarity if new_documents is None else new_similarity[new_documents]
    new = describe(new_sim)
    record: dict[str, Any] = {"old": old, "new": new, "all": describe(new_similarity), "new_documents": how,
              "reference_quantile": _key(REFERENCE_QUANTILE), "below_reference": None, "share_below_reference": None,
              "fits": True}
    if old is None or new is None:
        return record
    threshold = float(np.quantile(np.asarray(old_similarity, np.float64), REFERENCE_QUANTILE))  # not the rounded one
    below = int(np.count_nonzero(np.asarray(new_sim, np.float64) < threshold))
    share = below / len(new_sim)
    record.update(below_reference=below, share_below_reference=round(share, 6),
                  fits=not (share >= MIN_SHARE_BELOW and below >= MIN_DOCS_BELOW))
    return record


def fit_warning(record: dict, old_path, emb_path, k: int) -> str | None:
    """One warning line with the figures when the new documents do not fit, else None."""
    if record.get("fits", True):
        return None
    new, old = record["new"], record["old"]
    ref = record["reference_quantile"]
    who = "new documents" if record["new_documents"] != "unknown" else "documents"
    return (f"{record['below_reference']:,} of the {new['n']:,} {who} ({100 * record['share_below_reference']:.0f} %) "
            f"fit no old cluster: cosine to their centroid mean {new['mean']:.3f} (median {new['quantiles']['p50']:.3f})"
            f" vs {old['mean']:.3f} (median {old['quantiles']['p50']:.3f}) for the {old['n']:,} documents of {old_path}, "
            f"below the old documents' {int(ref[1:])}th percentile {old['quantiles'][ref]:.3f}; they were put in the "
            f"nearest old clusters anyway. Re-cluster to give them clusters of their own: clusterclip cluster "
            f"{emb_path} --out NEW_CL --k {k} (or more)")


def assignment_fit(emb, old, similarity: np.ndarray) -> tuple[dict, str | None]:
    """``(the manifest's fit record, a warning line or None)`` of ``--assign-only``: the documents of
    ``emb`` (their cosine to their centroid: ``similarity``) against those of CL_OLD (``old``)."""
    mask, how = new_documents(emb, old)
    record = fit_record(similarity, old_similarity(old), mask, how)
    return record, fit_warning(record, old.path, emb.path, old.k)


def new_documents(emb, old) -> tuple[np.ndarray | None, str]:
    """``(mask of the documents of emb that CL_OLD did not assign, how they were found)``.

    The same embed output: none. Built with ``--incremental`` directly from CL_OLD's embed output:
    the documents of the files that run embedded (new or changed). Another embed output of the same
    settings, still there: the documents of files whose content (sha256) it did not hold. Otherwise
    unknown (None): every document is compared.
    """
    recorded = old.embed_record
    if recorded.get("manifest_sha256") == emb.record()["manifest_sha256"]:
        return np.zeros(emb.n_docs, bool), "none (the same embed output)"
    lineage = emb.lineage
    if lineage and lineage[-1] == recorded.get("manifest_sha256"):
        return _from_files(emb, set(emb.incremental_files)), "the files the incremental embed embedded"
    try:
        from ..embed.directory import EmbedDir

        before = EmbedDir(Path(recorded.get("path", "")))
        if before.record()["manifest_sha256"] == recorded.get("manifest_sha256"):
            known = {(f["path"], f["sha256"]) for f in before.corpus_files}
            new_files = {f["path"] for f in emb.corpus_files if (f["path"], f["sha256"]) not in known}
            return _from_files(emb, new_files), "files whose content the old embed output did not hold"
    except (ClusterClipError, OSError, KeyError):
        pass
    return None, "unknown"


def _from_files(emb, paths: set) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not paths:
        return np.zeros(emb.n_docs, bool)
    source = emb.docs_table(["source"]).column("source")
    mask = pc.is_in(source, value_set=pa.array(sorted(paths), source.type if not pa.types.is_dictionary(source.type)
                                               else source.type.value_type))
    return np.asarray(mask.to_numpy(zero_copy_only=False), bool)


def old_similarity(old, batch_rows: int = 1 << 16) -> np.ndarray:
    """The cosine of every document CL_OLD assigned to its centroid (its assignments, digest checked)."""
    parts = [sim for _, _, sim in old.iter_assignments(batch_rows)]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
