"""What the sampler is told besides the clusters: per-cluster weights and clips, document scores,
semantic duplicates, and random mixtures for mixture search.

- :func:`read_cluster_table`: ``--weights FILE`` (Parquet, CSV or JSON): ``cluster`` -> ``weight``
  (a multiplier of the cluster's draw weight) and optionally ``max_repeats`` (its own clip).
- :func:`parse_cluster_repeats`: ``--cluster-max-repeats 3=1,7=2``.
- :func:`read_doc_scores`: ``--doc-weight-column`` (a numeric column of the corpus, or a Parquet /
  CSV / JSON file of ``doc_id`` -> score).
- :func:`semantic_duplicates`: SemDeDup inside every cluster (``--dedup-threshold``).
- :func:`dirichlet_weights`: the cluster weights of ``clusterclip mixtures`` (the step: :mod:`.mixtures`).

Everything here reads files and returns plain arrays for :func:`.sampling.plan_schedule`; errors
name the file, the row and the fix in one line.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from ..errors import InputError, MismatchError

TABLE_SUFFIXES = (".parquet", ".csv", ".json")


def file_digest(path) -> str:
    """sha256 of a file (recorded in the manifest: same path with other content is another job)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_table_path(path: Path, flag: str) -> None:
    """Refuse, in one line, a path that is not a regular file: missing, a directory, a device or a pipe
    (reading ``/dev/zero`` would never end)."""
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a directory; give a .parquet, .csv or .json file")
    if not path.exists():
        raise InputError(f"{flag} {path}: no such file")
    if not path.is_file():
        raise InputError(f"{flag} {path}: is not a regular file (a device, pipe or socket); give a .parquet, .csv "
                         f"or .json file")


def _read_table(path: Path, flag: str) -> dict[str, list]:
    """Columns of a small Parquet / CSV / JSON table. JSON: a list of objects, or one object
    ``{key: value}`` read as the two columns ``key`` and ``value``. In a CSV file only an empty
    field is missing (``nan``, ``NA`` or ``null`` are values, refused where a number is due)."""
    check_table_path(path, flag)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pydict()
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(null_values=[""])).to_pydict()
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return {"key": list(data), "value": list(data.values())}
            if isinstance(data, list) and all(isinstance(r, dict) for r in data):
                names = list(dict.fromkeys(k for r in data for k in r))
                return {n: [r.get(n) for r in data] for n in names}
            raise InputError(f"{flag} {path}: JSON must be an object {{cluster: weight}} or a list of objects")
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow and json raise several types for bad files
        raise InputError(f"{flag} {path}: cannot read it ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                         f"check the file") from None
    raise InputError(f"{flag} {path}: unknown file type; use .parquet, .csv or .json")


def _ids(values, path, flag, name, limit: int) -> np.ndarray:
    out: np.ndarray = np.empty(len(values), np.int64)
    for i, v in enumerate(values):
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            v = int(v)
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(f"{flag} {path}, row {i}: {name} {v!r} is not a whole number")
        if not 0 <= v < limit:
            raise MismatchError(f"{flag} {path}, row {i}: {name} {v} does not exist (ids are 0..{limit - 1}); "
                                f"is the file for this clustering?")
        out[i] = v
    if len(np.unique(out)) != len(out):
        dup = int(out[np.flatnonzero(np.diff(np.sort(out)) == 0)[0]])
        raise InputError(f"{flag} {path}: {name} {dup} is listed twice; give each once")
    return out


def _numbers(values, path, flag, name, *, integer=False, most: float | None = None, hint: str = "",
             rows=None) -> np.ndarray:
    """``values`` as float64, each a finite number >= 0 (whole with ``integer``, at most ``most``), else a
    one-line error naming its row (``rows``: the file's row of each value, when not all are given)."""
    out: np.ndarray = np.empty(len(values), np.float64)
    for i, v in enumerate(values):
        row = i if rows is None else rows[i]
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, int) and not isinstance(v, bool):
            try:
                v = float(v)
            except OverflowError:  # a whole number of hundreds of digits (JSON allows it)
                v = math.inf
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (
                integer and not float(v).is_integer()):
            kind = "a whole number >= 0" if integer else "a finite number >= 0"
            shown = "is empty" if v is None else f"{v!r}"
            raise InputError(f"{flag} {path}, row {row}: {name} {shown} must be {kind}")
        if most is not None and v > most:
            bound = f"{int(most):,}" if float(most).is_integer() and most < 1e15 else f"{most:g}"
            raise InputError(f"{flag} {path}, row {row}: {name} {v!r} must be at most {bound}{hint}")
        out[i] = v
    return out


#: the largest weight of a --weights file: weights are relative, and this bound keeps the sampler's
#: products (``size ** alpha * weight``, token budgets) finite for every --alpha
MAX_WEIGHT = 1e15


def read_cluster_table(path, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """``--weights FILE``: ``(weights float64 [K], max_repeats int64 [K])``.

    Columns ``cluster`` and ``weight`` (a JSON object ``{"cluster": weight}`` also works), optional
    ``max_repeats`` (a whole number >= 1, or empty). Clusters not listed keep weight 1 and the
    global ``--max-repeats`` (``max_repeats`` 0 in the result).
    """
    path = Path(path)
    flag = "--weights"
    table = _read_table(path, flag)
    if set(table) == {"key", "value"}:
        table = {"cluster": table["key"], "weight": table["value"]}
    if "cluster" not in table or not ({"weight", "max_repeats"} & set(table)):
        raise InputError(f"{flag} {path}: needs a column 'cluster' and a column 'weight' (and/or 'max_repeats'); "
                         f"found {', '.join(table) or 'none'}")
    clusters = _ids(table["cluster"], path, flag, "cluster", n_clusters)
    weights = np.ones(n_clusters)
    repeats: np.ndarray = np.zeros(n_clusters, np.int64)
    if "weight" in table:
        weights[clusters] = _numbers(table["weight"], path, flag, "weight", most=MAX_WEIGHT,
                                     hint="; weights are relative: divide them all by the same number")
    if "max_repeats" in table:
        from .settings import MAX_REPEATS_LIMIT

        listed = [i for i, v in enumerate(table["max_repeats"]) if v is not None and v != ""]
        values = _numbers([table["max_repeats"][i] for i in listed], path, flag, "max_repeats", integer=True,
                          most=MAX_REPEATS_LIMIT, rows=listed)
        if np.any(values < 1):
            raise InputError(f"{flag} {path}: max_repeats must be at least 1 (use weight 0 to leave a cluster out)")
        repeats[clusters[listed]] = values.astype(np.int64)
    if not np.any(weights > 0):
        raise InputError(f"{flag} {path}: every cluster has weight 0; give at least one a positive weight")
    return weights, repeats


def cluster_repeats_items(text: str) -> dict[int, int]:
    """``--cluster-max-repeats "3=1,7=2"`` -> ``{3: 1, 7: 2}``, each item checked (a whole cluster id
    >= 0, a clip between 1 and ``--max-repeats``' limit, each cluster once); the ids are checked against
    the clustering by :func:`parse_cluster_repeats`. The settings call it, so a bad value is refused
    before anything is read."""
    from .settings import MAX_REPEATS_LIMIT

    items: dict[int, int] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        k_text, eq, r_text = item.partition("=")
        k, r = _int_or_none(k_text), _int_or_none(r_text)
        if not eq or k is None or r is None:
            raise InputError(f"--cluster-max-repeats {item!r}: write CLUSTER=REPEATS, e.g. 3=1,7=2")
        if k < 0:
            raise InputError(f"--cluster-max-repeats {item!r}: cluster ids are 0 or more")
        if not 1 <= r <= MAX_REPEATS_LIMIT:
            raise InputError(f"--cluster-max-repeats {item!r}: repeats must be between 1 and {MAX_REPEATS_LIMIT:,} "
                             f"(as --max-repeats)")
        if k in items:
            raise InputError(f"--cluster-max-repeats {item!r}: cluster {k} is listed twice; give each once")
        items[k] = r
    if not items:
        raise InputError(f"--cluster-max-repeats {text!r}: names no cluster; write CLUSTER=REPEATS, e.g. 3=1,7=2")
    return items


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def parse_cluster_repeats(text: str, n_clusters: int, base=None) -> np.ndarray:
    """``--cluster-max-repeats "3=1,7=2"``: per-cluster clips (0 = the global one), over ``base``."""
    repeats = np.zeros(n_clusters, np.int64) if base is None else np.array(base, np.int64)
    for k, r in cluster_repeats_items(text).items():
        if k >= n_clusters:
            raise InputError(f"--cluster-max-repeats {k}={r}: no cluster {k} (ids are 0..{n_clusters - 1})")
        repeats[k] = r
    return repeats


def read_doc_scores(emb, spec: str) -> np.ndarray:
    """``--doc-weight-column``: a score >= 0 per document (float64 ``[N]``).

    ``spec`` is a ``.parquet``/``.csv``/``.json`` file with columns ``doc_id`` and ``score`` (or one
    other numeric column), every document listed once; otherwise the name of a numeric column of the
    corpus, read back from the corpus files (their content checked first).
    """
    path = Path(spec)
    flag = "--doc-weight-column"
    if path.suffix.lower() in TABLE_SUFFIXES and path.exists():
        table = _read_table(path, flag)
        if set(table) == {"key", "value"}:
            table = {"doc_id": table["key"], "score": table["value"]}
        others = [c for c in table if c != "doc_id"]
        column = "score" if "score" in table else (others[0] if len(others) == 1 else None)
        if "doc_id" not in table or column is None:
            raise InputError(f"{flag} {path}: needs columns 'doc_id' and 'score'; found {', '.join(table)}")
        ids = _ids(table["doc_id"], path, flag, "doc_id", emb.n_docs)
        if len(ids) != emb.n_docs:
            missing = int(np.setdiff1d(np.arange(emb.n_docs), ids)[0])
            raise InputError(f"{flag} {path}: doc_id {missing} has no score; give every document a score")
        scores = np.empty(emb.n_docs)
        scores[ids] = _numbers(table[column], path, flag, column)
        return scores
    return _corpus_column(emb, spec)


def _corpus_column(emb, column: str) -> np.ndarray:
    """A numeric column of the corpus, per document, in doc order (Parquet and JSON-lines corpora)."""
    flag = f"--doc-weight-column {column}"
    scores = np.empty(emb.n_docs)
    for start, values, sources, rows in iter_corpus_column(emb, column, flag):
        for j, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{flag}: {sources[j]}, row {rows[j]}: {value!r} is not a finite number >= 0; "
                                 f"fix the corpus or give a file of doc_id -> score")
        scores[start: start + len(values)] = values
    return scores


def iter_corpus_column(emb, column: str, flag: str):
    """``column`` of the corpus read back from its files (their content checked first), in doc order: batches of
    ``(first doc_id, values, source files, rows)`` (Parquet and JSON-lines corpora; any value type)."""
    from ..readers import reader_for
    from ..readers.parquet import ParquetReader

    emb.check_corpus()
    start = 0
    cache: tuple[str, dict] | None = None
    for batch in emb.iter_docs(["source", "row"]):
        sources = batch.column(0).to_pylist()
        rows = batch.column(1).to_numpy().tolist()
        values = []
        for src, row in zip(sources, rows):
            if cache is None or cache[0] != src:
                cache = (src, _file_column(reader_for(src), src, column, flag, ParquetReader))
            values.append(cache[1].get(row))
        yield start, values, sources, rows
        start += len(sources)


def _file_column(reader, src: str, column: str, flag: str, parquet_reader) -> dict:
    """row -> value of ``column`` in one corpus file."""
    if isinstance(reader, parquet_reader):
        import pyarrow.parquet as pq

        if column not in pq.ParquetFile(src).schema_arrow.names:
            raise InputError(f"{flag}: {src} has no column {column!r}")
        return dict(enumerate(pq.read_table(src, columns=[column]).column(0).to_pylist()))
    values = {}
    for i, line in reader.lines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # rows embed skipped are never looked up
        if isinstance(obj, dict):
            if column not in obj:
                raise InputError(f"{flag}: {src}, line {i + 1} has no key {column!r}")
            values[i] = obj[column]
    return values


def semantic_duplicates(store, labels: np.ndarray, centroids: np.ndarray, threshold: float,
                        chunk_elements: int = 1 << 24) -> np.ndarray:
    """SemDeDup (Abbas et al. 2023) inside every cluster: a boolean keep mask ``[N]``.

    In each cluster the documents are put in order of increasing cosine to the centroid (the
    least typical first, as SemDeDup keeps them) and a document is removed when some document
    before it in that order has cosine ``> threshold`` with it. Exact pairwise cosines, computed
    in chunks (memory ``O(chunk)``, time ``O(sum size_k ** 2 * D)``).
    """
    labels = np.asarray(labels)
    keep: np.ndarray = np.ones(len(labels), bool)
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=len(centroids))
    starts = np.cumsum(counts) - counts
    for k in np.flatnonzero(counts > 1):
        members = order[starts[k]: starts[k] + counts[k]]
        e = store.take(members)
        sim = e @ centroids[k].astype(np.float32)
        by = np.argsort(sim, kind="stable")
        members, e = members[by], e[by]
        n = len(members)
        step = max(1, chunk_elements // n)
        for a in range(1, n, step):
            b = min(n, a + step)
            block = e[a:b] @ e[:b].T  # rows a..b-1 against every document up to b
            np.minimum(block, 1.0, out=block)  # a cosine is at most 1 (rounding gives 1.0000001 for a duplicate)
            mask = np.arange(b)[None, :] >= np.arange(a, b)[:, None]
            block[mask] = -np.inf
            keep[members[a:b][block.max(axis=1) > threshold]] = False
    return keep


def dirichlet_weights(n: int, n_clusters: int, concentration: float, seed: int, present=None) -> np.ndarray:
    """``n`` cluster-weight vectors ``[n, K]`` drawn from ``Dirichlet(concentration)`` over the clusters
    that have documents (``present``); the others get 0."""
    rng = np.random.default_rng(seed)
    present = np.ones(n_clusters, bool) if present is None else np.asarray(present, bool)
    out = np.zeros((n, n_clusters))
    m = int(present.sum())
    if m:
        out[:, present] = rng.dirichlet(np.full(m, float(concentration)), size=n)
    return out
