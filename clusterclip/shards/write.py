"""Writing the shards: :func:`write_shards` streams through the order once and writes every
requested format (see the package docstring); each shard is journaled as it is committed."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..faults import checkpoint
from ..progress import bar as progress_bar
from ..progress import progress_enabled
from . import DEFAULT_SHARD_TOKENS, FORMATS, AccountingError, check_formats
from .base import ShardFormat, ShardPlan, StreamLayout
from .index import INDEX_VERSION, write_index
from .journal import JOURNAL_FILE, ShardJournal, shard_key
from .plan import OrderLookup, PlanLookup, largest_sample, plan_shards, shard_pieces, total_tokens


def _check_layout(layout: StreamLayout) -> None:
    v = layout.vocab_size
    if v > 2**31:
        raise InputError(f"vocabulary of {v} ids: token ids must fit int32")
    for opt, tid in (("--eos-token", layout.eos_id), ("--bos-token", layout.bos_id), ("pad id", layout.pad_id)):
        if tid is not None and not 0 <= tid < v:
            raise InputError(f"{opt}: id {tid} is outside the vocabulary (0..{v - 1}); name a token of the tokenizer")
    if layout.bos_id is not None and layout.bos_id == layout.eos_id:
        raise InputError("--bos-token and --eos-token: the same token before and after every document cannot be "
                         "told apart; use --eos-token none for a token before each document only")
    if (layout.align_tokens or layout.pack) and layout.pad_id is None:
        raise InputError(f"{'--align-tokens' if layout.align_tokens else '--pack'}: the last shard is filled with "
                         f"a pad token, the EOS or BOS token; keep a delimiter (--eos-token or --bos-token)")


def write_shards(
    order_doc_ids: np.ndarray,
    order_cluster: np.ndarray,
    order_repeat: np.ndarray,
    token_store,
    out_dir: str | os.PathLike,
    *,
    formats: Sequence[str] = ("bin",),
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    eos_id: int | None,
    vocab_size: int,
    bos_id: int | None = None,
    pad_id: int | None = None,
    align_tokens: int | None = None,
    pack: int | None = None,
    progress: bool = True,
    resume: bool = True,
    journal_path: str | os.PathLike | None = None,
    run_shards=None,
    min_shards: int = 1,
    keep_shard_tokens: int | None = None,
) -> dict:
    """Write the samples of the order (``BOS? + document tokens + EOS?``) as shards in each of ``formats``.

    ``order_*`` are aligned arrays, one entry per position of ``order.parquet``;
    ``token_store`` is a :class:`clusterclip.tokens.store.TokenStore` holding every document of
    the order. ``eos_id`` / ``bos_id``: the delimiters (None: none); ``pad_id`` (default: EOS,
    else BOS) fills the last shard with ``align_tokens`` / ``pack``. With ``resume`` a shard
    already complete in ``out_dir`` is kept if its files re-hash to the digests journaled when
    it was committed (``journal_path``, default ``out_dir/.shards-journal.jsonl``; removed at
    the end); the others are (re)written. Returns the ``shards.json`` index.

    ``shard_tokens`` is lowered to what every format's reader accepts (:func:`shard_tokens_for`:
    a ``bin`` file stays under 2 GiB) and, with ``min_shards``, so that the stream makes at least
    that many shards (modded-nanogpt's loader needs two files). ``shards.json`` records the value
    used (``shard_tokens``) and the one asked for (``shard_tokens_requested``). ``keep_shard_tokens``: cut at this
    size as it is (``schedule --continue`` keeps OLD's, so the shards before the continued point are cut where
    OLD's were, whatever this stream's length); a stream it cuts into fewer than ``min_shards`` is refused.

    ``run_shards(job, pending, writers, bar)`` chooses where the shards are written (default
    :func:`write_here`, this process; the Ray engine writes each in a task): it yields
    ``(plan, format, result)`` for every shard of ``pending`` in any order, and this function
    journals each one as it comes.
    """
    out = Path(out_dir)
    n = len(order_doc_ids)
    if len(order_cluster) != n or len(order_repeat) != n:
        raise ValueError("order_doc_ids, order_cluster and order_repeat must have the same length")
    if pad_id is None:
        pad_id = eos_id if eos_id is not None else bos_id
    layout = StreamLayout(int(vocab_size), _opt_int(eos_id), _opt_int(bos_id), _opt_int(pad_id),
                          _opt_int(align_tokens), _opt_int(pack))
    formats = check_formats(formats, align_tokens=layout.align_tokens, pack=layout.pack)
    _check_layout(layout)

    lengths = token_store.lengths
    delims = layout.delimiters
    expected_tokens = total_tokens(order_doc_ids, lengths, delims)  # independent of the plan
    largest = largest_sample(order_doc_ids, lengths, delims) if min_shards > 1 else 0
    used_shard_tokens = shard_tokens_for(formats, layout, int(shard_tokens), expected_tokens, int(min_shards),
                                         largest) if keep_shard_tokens is None else int(keep_shard_tokens)
    plans = plan_shards(order_doc_ids, lengths, used_shard_tokens, delimiters=delims,
                        align_tokens=layout.align_tokens, pack=layout.pack)
    if keep_shard_tokens is not None and len(plans) < min_shards:
        raise InputError(f"--continue: the shards continued are cut every {used_shard_tokens:,} tokens (the size the "
                         f"schedule continued from used), which makes {len(plans)} shard(s) of this schedule's "
                         f"{expected_tokens:,} tokens, and the convention's loader needs {min_shards}; raise the budget "
                         f"past {used_shard_tokens * (min_shards - 1):,} tokens, or plan the schedule continued from "
                         f"with a --shard-tokens of at most half its tokens")
    writers = [FORMATS[f](out, layout) for f in formats]
    for w in writers:
        w.dir.mkdir(parents=True, exist_ok=True)
        _clean_stale(w, plans)
    journal = ShardJournal(journal_path or out / JOURNAL_FILE)
    if resume:
        journal.load()
    else:
        journal.reset()
    layout_record = dict(layout.__dict__)

    bar = None
    by_index: dict[str, dict[int, dict]] = {f: {} for f in formats}  # format -> shard index -> record
    written_by_index: dict[str, dict[int, dict]] = {f: {} for f in formats}
    try:
        pending, kept_tokens = _shards_to_write(plans, writers, journal if resume else None, out, layout_record,
                                                order_doc_ids, by_index, written_by_index)
        if progress_enabled(progress):  # after the resume check: its kept shards are not this run's rate
            bar = progress_bar(sum(p.tokens for p in plans), unit="tok", unit_scale=True, initial=kept_tokens,
                               desc=f"shards ({','.join(formats)})", leave=False)
        job = ShardJob(out, layout, plans, order_doc_ids, order_cluster, order_repeat, token_store)
        keys = {(plan.index, fmt): key for plan, todo in pending for fmt, key in todo}
        remaining = {plan.index: len(todo) for plan, todo in pending}
        for plan, fmt, got in (run_shards or write_here)(job, pending, writers, bar):
            by_index[fmt][plan.index] = _record(plan, got["files"], got["rows"])  # journaled here, whatever the engine
            written_by_index[fmt][plan.index] = got["written"]
            journal.append({"format": fmt, "index": plan.index, "key": keys[plan.index, fmt], "files": got["files"],
                            "written": got["written"], "rows": got["rows"]})
            remaining[plan.index] -= 1
            if not remaining[plan.index]:
                checkpoint("schedule.shard")
        records = {f: [r[p.index] for p in plans if p.index in r] for f, r in by_index.items()}
        written = {f: [r[p.index] for p in plans if p.index in r] for f, r in written_by_index.items()}
        extra = {}
        for w in writers:
            files = w.finish(records[w.name])
            if files:
                extra[w.name] = files
    finally:
        if bar is not None:
            bar.close()

    for w in writers:
        _check_accounting(w, plans, written[w.name], n, expected_tokens)
    index = {
        "version": INDEX_VERSION,
        "formats": list(formats),
        "n_samples": int(n),
        "n_tokens": int(expected_tokens),
        "n_shards": len(plans),
        "shard_tokens": int(used_shard_tokens),
        "shard_tokens_requested": int(shard_tokens),
        "eos_id": layout.eos_id,
        "bos_id": layout.bos_id,
        "pad_id": layout.pad_id,
        "delimiters": delims,
        "align_tokens": layout.align_tokens,
        "pack": layout.pack,
        "vocab_size": layout.vocab_size,
        "token_dtype": token_store.dtype.name if hasattr(token_store, "dtype") else None,
        "format_info": {w.name: w.describe() for w in writers},
        "shards": records,
        "dataset_files": extra,
    }
    write_index(out, index)
    journal.reset()
    return index


#: ``--convention`` -> the fewest shards its trainer's shipped loader runs on: modded-nanogpt's
#: ``distributed_data_generator`` calls ``next(file_iter)`` for a second file before the first batch
#: (one file: ``StopIteration`` inside the generator, a ``RuntimeError``), so a small corpus gets two
#: files (fewer files also lose less: it drops each file's tail that no longer fills a batch)
CONVENTION_MIN_SHARDS = {"modded-nanogpt": 2}


def shard_tokens_for(formats: Sequence[str], layout: StreamLayout, shard_tokens: int, total: int,
                     min_shards: int = 1, largest: int = 0) -> int:
    """``shard_tokens`` lowered to the file-size limit of every format in ``formats`` (look-ahead token
    included) and, when ``min_shards > 1`` and the stream (``total`` tokens, longest sample ``largest``)
    would make fewer shards, to the size that cuts it into ``min_shards`` (a greedy cut by whole
    samples fills each shard to within one sample of the size, hence ``+ largest``); a one-line error
    when an ``--align-tokens`` / ``--pack`` unit alone is over a limit."""
    used = int(shard_tokens)
    overlap = 1 if layout.align_tokens else 0
    unit = layout.align_tokens or layout.pack
    for f in formats:
        cap = FORMATS[f].max_file_tokens(layout.vocab_size)
        if cap is None:
            continue
        if unit and unit + overlap > cap:
            flag = "--align-tokens" if layout.align_tokens else "--pack"
            raise InputError(f"{flag} {unit}: one {f} file holds at most {cap:,} tokens of this vocabulary; "
                             f"lower it, or write {f} in another run")
        used = min(used, cap - overlap)
    if min_shards > 1 and total > 0 and -(-total // used) < min_shards:
        if unit:
            used = -(-total // (min_shards * unit)) * unit
        else:
            used = min(-(-(total + max(0, largest - 1) * (min_shards - 1)) // min_shards), total - 1)
        used = max(1, used)
    return used


def _opt_int(x) -> int | None:
    return None if x is None else int(x)


def _record(plan: ShardPlan, files: list[dict], rows: int | None = None) -> dict:
    rec = {"index": plan.index, "first_sample": plan.start, "first_offset": plan.first_offset,
           "samples": plan.samples, "start": plan.start, "stop": plan.stop, "continues": plan.tail > 0,
           "tokens": plan.tokens, "overlap": plan.overlap, "pad": plan.pad, "start_token": plan.start_token,
           "files": files}
    if rows is not None:
        rec["rows"] = int(rows)
    return rec


def _check_accounting(w: ShardFormat, plans: list[ShardPlan], written: list[dict], n: int, expected: int) -> None:
    where = f"{w.dir}"
    for plan, got in zip(plans, written):
        if got["tokens"] != w.stored_tokens(plan):
            raise AccountingError(f"{where}: shard {plan.index} holds {got['tokens']} tokens, its plan "
                                  f"{w.stored_tokens(plan)}; this is a bug, please report it")
    samples = sum(g["samples"] for g in written)
    own = sum(g["tokens"] for g in written) - sum(w.stored_tokens(p) - p.tokens for p in plans)
    if samples != n or own != expected or len(written) != len(plans):
        raise AccountingError(f"{where}: the shards hold {samples} samples and {own} tokens but the order has "
                              f"{n} samples and {expected} tokens; this is a bug, please report it")


def _clean_stale(writer: ShardFormat, plans: list[ShardPlan]) -> None:
    """Drop leftovers of interrupted writes and shard files that are not part of this plan."""
    if not writer.dir.is_dir():
        return
    keep = {f for p in plans for f in writer.files(p.index)} | set(writer.final_files())
    for f in writer.dir.glob(".*.tmp"):
        f.unlink(missing_ok=True)
    for f in writer.dir.glob(writer.pattern):
        if f not in keep:
            f.unlink(missing_ok=True)


@dataclass(frozen=True)
class ShardJob:
    """What every shard of one ``write_shards`` call reads: the output, the layout, the cuts, the order, the tokens.

    An engine that writes shards elsewhere (``run_shards=``) may hand a task a job whose arrays
    cover only that shard's positions (anything indexable by absolute order position).
    """

    out: Path
    layout: StreamLayout
    plans: PlanLookup
    order_doc_ids: OrderLookup
    order_cluster: OrderLookup
    order_repeat: OrderLookup
    store: object


def write_here(job: ShardJob, pending, writers, bar):
    """The local engine: write the ``pending`` shards one after another in this process.

    Yields ``(plan, format, result)`` as each shard file set is committed (see :func:`write_shard`).
    """
    by_name = {w.name: w for w in writers}
    for plan, todo in pending:
        chosen = [by_name[fmt] for fmt, _ in todo]
        for w, got in zip(chosen, write_shard(chosen, plan, job, bar)):
            yield plan, w.name, got


def _shards_to_write(plans: list[ShardPlan], writers: list[ShardFormat], journal: ShardJournal | None, out: Path,
                     layout_record: dict, order_doc_ids, by_index: dict[str, dict[int, dict]],
                     written_by_index: dict[str, dict[int, dict]]) -> tuple[list[tuple[ShardPlan, list[tuple[str, str]]]], int]:
    """The shards left to write, ``[(plan, [(format, key)])]``, and the tokens of those kept: a shard of a format
    is kept when ``journal`` (None: no resume) proves its files intact; its records go to ``by_index`` and
    ``written_by_index``."""
    pending: list[tuple[ShardPlan, list[tuple[str, str]]]] = []
    kept_tokens = 0
    for plan in plans:
        todo = []
        for w in writers:
            key = shard_key(w.name, {**layout_record, **w.describe()}, plan, order_doc_ids)
            kept = journal.kept(out, w.name, plan.index, key) if journal is not None else None
            if kept is not None:
                by_index[w.name][plan.index] = _record(plan, kept["files"], kept.get("rows"))
                written_by_index[w.name][plan.index] = kept["written"]
            else:
                todo.append((w.name, key))
        if todo:
            pending.append((plan, todo))
        else:
            kept_tokens += plan.tokens
    return pending, kept_tokens


def write_shard(writers: Sequence[ShardFormat], plan: ShardPlan, job: ShardJob, bar=None):
    """Write shard ``plan`` in each of ``writers``' formats; yields each writer's result once committed.

    A result is ``{"files": [...], "written": {"tokens", "samples"}, "rows": ...}``. Nothing is
    journaled here: :func:`write_shards` journals each result in the driver, whatever engine wrote it.
    """
    started = []
    try:
        for w in writers:
            w.written = {"tokens": 0, "samples": 0}
            w.last_rows = None
            w.begin(plan)
            started.append(w)
        for tokens, segments in shard_pieces(plan, job.plans, job.order_doc_ids, job.order_cluster,
                                             job.order_repeat, job.store, job.layout):
            for w in writers:
                w.write(tokens, segments)
            if bar is not None:
                bar.update(int(segments.sizes[segments.positions >= 0].sum()))
        for w in writers:
            files = w.commit()
            yield {"files": files, "written": dict(w.written), "rows": getattr(w, "last_rows", None)}
    except ValueError as e:
        for w in started:
            w.abort()
        raise InputError(f"shard {plan.index}: {e}; lower --shard-tokens") from None
    except BaseException:
        for w in started:
            w.abort()
        raise
