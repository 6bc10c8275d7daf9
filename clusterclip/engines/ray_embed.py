"""``embed`` on Ray: the corpus read as a Ray dataset, the encoder as actors, the parts written by the driver.

The pipeline (a Ray Data dataset, executed in the order of its inputs)::

    input files (one item per file, in the tool's global order)
      -> map_batches(_read_files)           tasks: every row a document or a counted skip (readers/)
      -> map_batches(_EncodeDocuments)      actors: the encoder loaded once per actor
                                            (num_gpus=1 each on GPUs; a fraction of a CPU on CPUs)
      -> the driver: documents in order     -> EmbedWriter.write_part (journal, resume), as run_local

Each file's read ends with one *accounting row* (its rows, documents, empty skips, and the
documents already in the parts kept by a resumed run), so the driver checks, file by file and
in order, that every input row is a document it received or a counted skip. Document rows
carry their file and row; the driver checks that they arrive in strictly increasing order.

The directory equals the local engine's: the same parts (``--part-docs`` documents each, cut by
the driver), the same ``docs.parquet`` bytes, the same statistics (per-document token counts and
truncation flags come back from the actors). Embeddings are equal within floating-point
tolerance: the actors batch documents as Ray hands them over (``--window-docs`` at a time), not
in the local engine's windows, and a model's arithmetic may round differently in another batch.

A resumed run keeps the parts the journal vouches for (``EmbedWriter.resume``) and re-reads
the corpus for the accounting, but sends no document of a kept part to the encoder.

Not with this engine: ``--num-partitions`` (Ray replaces the Slurm-array split; the row numbering
of a partition needs every earlier file's row count) and ``--limit`` (a trial run: use the local
engine). Workers read the corpus files by path: on a multi-node cluster they must be on a shared
file system.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..progress import bar as progress_bar
from ..readers import ReadStats, reader_for
from ..readers.base import EMPTY_ROWS_LISTED
from .ray_session import TASK_NODES, cluster_gpus, connect, node_id, reraise, task_environment

DOC, ACCOUNT = 0, 1
#: documents per block a read task hands to Ray
READ_BLOCK_DOCS = 1024
#: CPUs an encoder actor reserves on a CPU-only cluster (a fraction, so the read tasks always get a CPU)
CPU_ACTOR_CPUS = 0.5


# --------------------------------------------------------------------------- the encoder, resolved on the cluster
@dataclass
class RayEncoder:
    """What the driver knows of the encoder the actors run: its settings (for the manifest) and dimension.

    ``actor_settings`` pins the device and precision resolved on a worker, so every actor runs
    exactly what the manifest records, whatever node it lands on.
    """

    settings: dict
    dim: int
    actor_settings: object
    gpus: int  #: GPUs the actors run on (0: CPU actors)
    make: object  #: the step's encoder factory (``make(settings) -> encoder``), run in every actor


def ray_encoder(settings, make, log=None) -> RayEncoder:
    """Resolve the encoder where it will run: on a GPU worker when the cluster has GPUs (``--device auto``)."""
    ray = connect(settings.ray_address, log)
    gpus = cluster_gpus()
    device = settings.device.lower()
    if device == "auto":
        device = "cuda" if gpus else "cpu"
    elif device.startswith("cuda"):
        if not gpus:
            raise InputError(f"--device {settings.device}: the Ray cluster has no GPU; use --device cpu (or auto)")
        device = "cuda"  # each actor sees the one GPU Ray gave it
    use_gpu = device.lower().startswith("cuda")
    probe = ray.remote(_describe_encoder).options(num_gpus=1 if use_gpu else 0, num_cpus=CPU_ACTOR_CPUS)
    try:
        resolved, dim = ray.get(probe.remote(make, settings.replace(device=device)))
    except Exception as e:  # noqa: BLE001 - the user's one-line error, if it is one
        reraise(e)
    pinned = {"device": device}
    if resolved.get("dtype") in ("float32", "float16", "bfloat16"):
        pinned["dtype"] = resolved["dtype"]
    return RayEncoder(resolved, dim, settings.replace(**pinned), gpus if use_gpu else 0, make)


def _describe_encoder(make, settings):
    task_environment()
    encoder = make(settings)
    return encoder.settings, int(encoder.dim)


# --------------------------------------------------------------------------- the runner
class RayEmbedRunner:
    """The embed step's runner on Ray (``RayEngine.runner("embed")``): the encoder resolved on a worker,
    the parts embedded by the Ray Data pipeline of the module docstring."""

    def check(self, settings, given) -> None:
        """Before the inputs are read: an encoder loaded here cannot run on the workers."""
        if given is not None:
            raise InputError("embed_corpus: with engine='ray' the encoder is built on the workers; leave encoder= out")

    def encoder(self, settings, *, make, given=None, log=None) -> RayEncoder:
        self.check(settings, given)
        return ray_encoder(settings, make, log)

    def embed_parts(self, readers, settings, encoder, writer, partition, *, done_parts: int,
                    progress: bool) -> tuple[ReadStats, int]:
        return run_ray(readers, settings, encoder, writer, partition, done_parts=done_parts, progress=progress)


RAY_EMBED = RayEmbedRunner()


def run_ray(readers, settings, encoder: RayEncoder, writer, partition, *, done_parts: int,
            progress: bool) -> tuple[ReadStats, int]:
    """Embed every document after the first ``done_parts`` parts into ``writer`` (as ``run_local``).

    Returns the read accounting (checked here, file by file) and the documents embedded by this call.
    """
    if not isinstance(encoder, RayEncoder):
        raise InputError("embed_corpus: the ray engine builds its encoder on the workers; leave encoder= out")
    if partition is not None and not partition.whole:  # EmbedSettings.validate refuses it first
        raise InputError("--num-partitions: not with --engine ray; Ray spreads the work itself")
    ray = connect(settings.ray_address)
    from ray.data import ActorPoolStrategy

    sources = [str(r.path) for r in readers]
    kept_docs = sum(int(e["docs"]) for e in writer.journal)
    resume_after = _resume_point(writer, sources)

    ds = ray.data.from_items([{"unit": i, "path": p} for i, p in enumerate(sources)], override_num_blocks=len(sources))
    ds = ds.map_batches(_read_files, batch_size=1, num_cpus=1,
                        fn_kwargs={"text_column": settings.text_column, "id_column": settings.id_column,
                                   "resume_after": resume_after})
    gpus = encoder.gpus
    actors = settings.ray_actors or (gpus if gpus else 1)
    threads = None if gpus else _cpu_threads(ray, actors)
    ds = ds.map_batches(_EncodeDocuments, batch_size=settings.window_docs, compute=ActorPoolStrategy(size=actors),
                        num_gpus=1 if gpus else 0, num_cpus=1 if gpus else CPU_ACTOR_CPUS,
                        fn_constructor_kwargs={"make": encoder.make, "settings": encoder.actor_settings,
                                               "threads": threads,
                                               "save_dtype": settings.save_dtype})
    assembler = _Assembler(writer, settings, sources, encoder.dim, done_parts, kept_docs, resume_after)
    known = [r.known_rows() for r in readers]  # Parquet metadata: a total without reading (rows >= documents)
    total = max(0, sum(known) - kept_docs) if all(k is not None for k in known) else None
    bar = progress_bar(total, desc="embed (ray)", unit="doc", unit_scale=True, enabled=progress)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            added = assembler.add(batch)
            if added:
                bar.update(added)
    except Exception as e:  # noqa: BLE001 - a task's one-line error reaches the user as it is
        reraise(e)
    else:
        bar.total = bar.n  # every document is in: the total is exact
        bar.refresh()
    finally:
        bar.close()
    return assembler.finish(), assembler.embedded


def _cpu_threads(ray, actors: int) -> int:
    """Torch threads per CPU actor: the node's cores, shared by the actors when there is one node."""
    cores = os.cpu_count() or 1
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return max(1, cores // actors) if nodes <= 1 else cores


def _resume_point(writer, sources: list[str]) -> tuple[int, int] | None:
    """``(file index, row)`` of the last document in the parts a resumed run keeps (None: start)."""
    point = writer.resume_point()
    if point is None:
        return None
    source, row = point
    if source not in sources:
        raise InputError(f"{writer.build}: the kept parts name {source}, not an input of this run; "
                         f"rerun with --overwrite")
    return sources.index(source), row


# --------------------------------------------------------------------------- read tasks
def _read_files(batch: dict, *, text_column: str, id_column: str | None, resume_after):
    """Every document of each file in ``batch`` (a block of up to READ_BLOCK_DOCS at a time), then its accounting row."""
    task_environment()
    node = node_id()
    for unit, path in zip(batch["unit"], batch["path"]):
        unit = int(unit)
        stats = ReadStats()
        rows, texts, ids = [], [], []
        kept = 0
        kept_through = _kept_through(unit, resume_after)
        for row, text, user_id in reader_for(path).documents(text_column, id_column, stats=stats):
            if kept_through is None or row <= kept_through:  # in a part the resumed run keeps
                kept += 1
                continue
            rows.append(row)
            texts.append(text)
            ids.append(pickle.dumps(user_id) if id_column is not None else b"")
            if len(rows) >= READ_BLOCK_DOCS:
                yield _block(unit, rows, texts, ids, node=node)
                rows, texts, ids = [], [], []
        account = {"rows": stats.rows, "docs": stats.documents, "empty": stats.skipped_empty, "kept": kept,
                   "empty_rows": stats.empty_rows}
        yield _block(unit, rows, texts, ids, account, node=node)


def _kept_through(unit: int, resume_after) -> int | None:
    """The last row of file ``unit`` in the kept parts: -1 for none, None for all of them."""
    if resume_after is None or resume_after[0] < unit:
        return -1
    return resume_after[1] if resume_after[0] == unit else None


def _block(unit: int, rows: list, texts: list, ids: list, account: dict | None = None, *, node: str = "") -> dict:
    n = len(rows) + (account is not None)
    kind: np.ndarray = np.full(n, DOC, dtype=np.int8)
    counts: np.ndarray = np.zeros((n, 4), dtype=np.int64)
    if account is not None:
        kind[-1] = ACCOUNT
        counts[-1] = [account["rows"], account["docs"], account["empty"], account["kept"]]
        rows, texts, ids = rows + [-1], texts + [""], ids + [pickle.dumps(account["empty_rows"])]
    text: np.ndarray = np.empty(n, dtype=object)
    text[:] = texts
    uid: np.ndarray = np.empty(n, dtype=object)
    uid[:] = ids
    return {"kind": kind, "unit": np.full(n, unit, dtype=np.int64), "row": np.asarray(rows, dtype=np.int64),
            "text": text, "uid": uid, "n_chars": np.fromiter((len(t) for t in texts), dtype=np.int64, count=n),
            "account": counts, "read_on": np.full(n, node, dtype=object)}


# --------------------------------------------------------------------------- encoder actors
class _EncodeDocuments:
    """An actor: the encoder, loaded once; each batch -> embeddings, token counts, truncation flags."""

    def __init__(self, make, settings, threads: int | None, save_dtype: str):
        task_environment()
        self.save_dtype = np.dtype(save_dtype)  # cast here as the writer would: half the bytes sent for float16
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.encoder = make(settings)
        self.max_length = int(self.encoder.settings.get("max_length") or 0)
        self.node = node_id()

    def __call__(self, batch: dict) -> dict:
        docs = np.flatnonzero(batch["kind"] == DOC)
        n = len(batch["kind"])
        out = {k: v for k, v in batch.items() if k != "text"}
        emb = np.zeros((n, self.encoder.dim), dtype=self.save_dtype)
        n_tokens: np.ndarray = np.zeros(n, dtype=np.int64)
        truncated: np.ndarray = np.zeros(n, dtype=bool)
        if len(docs):
            texts = [str(batch["text"][i]) for i in docs]
            prepared = self.encoder.prepare(texts)
            emb[docs] = self.encoder.embed(prepared)
            n_tokens[docs] = prepared.tokens
            truncated[docs] = self._truncated(texts, prepared)
        out.update(embedding=emb, n_tokens=n_tokens, truncated=truncated, encoded_on=np.full(n, self.node, dtype=object))
        return out

    def _truncated(self, texts: list[str], prepared) -> np.ndarray:
        """Which documents were cut at --max-length (the encoder reports a count per batch).

        A truncated document fills ``max_length`` tokens, so only those are candidates; when the
        count does not settle it, each candidate is prepared alone (the same tokenization).
        """
        flags: np.ndarray = np.zeros(len(texts), dtype=bool)
        if not prepared.truncated:
            return flags
        tokens = np.asarray(prepared.tokens)
        candidates = np.flatnonzero(tokens >= self.max_length) if self.max_length else np.arange(len(texts))
        if len(candidates) == prepared.truncated:
            flags[candidates] = True
            return flags
        for i in candidates:
            flags[i] = self.encoder.prepare([texts[i]]).truncated > 0
        if int(flags.sum()) != prepared.truncated:
            raise RuntimeError(f"internal error: {int(flags.sum())} documents flagged as truncated, "
                               f"the encoder counted {prepared.truncated}")
        return flags


# --------------------------------------------------------------------------- the driver
class _Assembler:
    """Documents in order -> parts of ``part_docs`` through the EmbedWriter, with the accounting checked."""

    def __init__(self, writer, settings, sources, dim, done_parts, kept_docs, resume_after):
        self.writer, self.sources, self.dim = writer, sources, dim
        self.part_docs = settings.part_docs
        self.part = done_parts
        self.next_doc = kept_docs  # global index of the next document
        self.kept_docs = kept_docs
        self.last = resume_after or (-1, -1)
        self.unit = 0  # the file whose documents come now
        self.received = 0  # documents received of that file
        self.kept_seen = 0
        self.embedded = 0
        self.stats = ReadStats()
        self.buf = _empty()

    def add(self, batch: dict) -> int:
        if len(batch["kind"]):  # where this block was read and encoded (the engine's record of its nodes)
            TASK_NODES.update({str(n) for n in batch["read_on"]} | {str(n) for n in batch["encoded_on"]})
        kind = batch["kind"]
        accounts = np.flatnonzero(kind == ACCOUNT)
        added, lo = 0, 0
        for hi in accounts.tolist() + [len(kind)]:
            if hi > lo:
                added += self._documents(batch, lo, hi)
            if hi < len(kind):
                self._account(int(batch["unit"][hi]), batch["account"][hi], pickle.loads(batch["uid"][hi]))
            lo = hi + 1
        return added

    def _documents(self, batch: dict, lo: int, hi: int) -> int:
        units, rows = batch["unit"][lo:hi], batch["row"][lo:hi]
        if np.any(units != self.unit) or rows[0] <= (self.last[1] if self.last[0] == self.unit else -1) \
                or np.any(np.diff(rows) <= 0):
            raise RuntimeError(f"internal error: documents out of order from the ray engine at file {self.unit}")
        self.last = (self.unit, int(rows[-1]))
        emb = batch["embedding"][lo:hi]
        bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
        if len(bad):
            j = int(bad[0])
            raise InputError(
                f"{self.sources[self.unit]}, row {int(rows[j])}: its embedding is NaN or zero (an unembeddable "
                f"document, or overflow in the compute dtype); check the text, or rerun with --dtype float32")
        n = hi - lo
        self.received += n
        start = 0
        while start < n:  # cut at part boundaries
            room = (self.part + 1) * self.part_docs - self.next_doc
            take = min(room, n - start)
            sl = slice(lo + start, lo + start + take)
            b = self.buf
            b["emb"].append(batch["embedding"][sl])
            b["rows"].extend(int(r) for r in batch["row"][sl])
            b["n_chars"].extend(int(c) for c in batch["n_chars"][sl])
            b["n_tokens"].extend(int(t) for t in batch["n_tokens"][sl])
            b["user_ids"].extend(pickle.loads(u) if u else None for u in batch["uid"][sl])
            b["truncated"] += int(np.count_nonzero(batch["truncated"][sl]))
            b["sources"].extend([self.sources[self.unit]] * take)
            self.next_doc += take
            start += take
            if self.next_doc == (self.part + 1) * self.part_docs:
                self._flush()
        self.embedded += n
        return n

    def _account(self, unit: int, counts, empty_rows: list) -> None:
        rows, docs, empty, kept = (int(x) for x in counts)
        if unit != self.unit:
            raise RuntimeError(f"internal error: the accounting of file {unit} came while reading file {self.unit}")
        if self.received + kept != docs:
            raise InputError(f"{self.sources[unit]}: accounting failed: {docs} documents read but {self.received} "
                             f"received and {kept} kept; nothing was written. This is a bug: please report it")
        self.stats.rows += rows
        self.stats.documents += docs
        self.stats.skipped_empty += empty
        self.stats.empty_rows.extend(empty_rows[: max(0, EMPTY_ROWS_LISTED - len(self.stats.empty_rows))])
        self.stats.per_file_rows.append(rows)
        self.kept_seen += kept
        self.unit, self.received = unit + 1, 0

    def _flush(self) -> None:
        b = self.buf
        emb = np.concatenate(b["emb"]) if b["emb"] else np.zeros((0, self.dim), dtype=np.float32)
        self.writer.write_part(self.part, emb, b["sources"], b["rows"], b["n_chars"], b["n_tokens"],
                               b["user_ids"], b["truncated"], dim=self.dim)
        self.part += 1
        self.buf = _empty()

    def finish(self) -> ReadStats:
        if self.unit != len(self.sources):
            raise RuntimeError(f"internal error: the ray engine reported {self.unit} of {len(self.sources)} files")
        if self.kept_seen != self.kept_docs:
            raise InputError(f"{self.writer.build}: the kept parts hold {self.kept_docs} documents but the corpus has "
                             f"{self.kept_seen} before the resume point; rerun with --overwrite")
        if self.buf["emb"]:
            self._flush()
        self.stats.complete = True
        return self.stats


def _empty() -> dict:
    return {"emb": [], "sources": [], "rows": [], "n_chars": [], "user_ids": [], "n_tokens": [], "truncated": 0}
