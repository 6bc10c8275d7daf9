"""Look inside a ``schedule`` output: the shards of each format, and any sample read back from them.

Tokens are read from the shard files through each format's own layout (its
``ShardFormat.read_shard``: llm.c header + flat stream, Megatron ``.idx`` + ``.bin``, MDS shard
offsets, Parquet rows, ...), not from a cache, so what :func:`sample_report` shows is what a
trainer will read. With ``--align-tokens`` / ``--pack`` a sample may span shards: the report
names every shard that holds a piece of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .schedule.directory import ScheduleDir
from .settings import Settings, setting
from .shards import FORMATS, find_shards


@dataclass(frozen=True)
class InspectSettings(Settings):
    """What ``clusterclip inspect`` shows (see its ``--help``)."""

    step = "inspect"

    samples: tuple = setting((), flag="--sample", aliases=("-s",), kind=int, multiple=True, min=0, group="show",
                             metavar="I",
                             help="Show position I of the order: doc_id, cluster, repeat and its tokens read back "
                                  "from the shard files. Repeatable.")
    decode: bool = setting(False, flag="--decode", kind=bool, group="show",
                           help="Also decode the sample's tokens to text with the tokenizer recorded in "
                                "OUT/manifest.json (or --tokenizer).")
    format: str | None = setting(None, flag="--format", kind=str, choices=tuple(FORMATS), optional=True,
                                 group="show",
                                 help="Read the sample from this format only (default: every format written, and "
                                      "check they agree).")
    shards: bool = setting(False, flag="--shards", kind=bool, group="show",
                           help="List every shard (of --format, default the first): its first and last sample, "
                                "where it cuts a sample (--align-tokens/--pack), its look-ahead and padding tokens.")
    tokenizer: str | None = setting(None, flag="--tokenizer", kind=str, optional=True, group="show", metavar="SPEC",
                                    help="Tokenizer for --decode instead of the recorded one: a tokenizer.json, a "
                                         "HF tokenizer directory or a hub name.")
    max_tokens: int = setting(64, flag="--max-tokens", kind=int, min=0, group="show",
                              help="Print at most this many token ids per sample (0: all).")
    json: bool = setting(False, flag="--json", kind=bool, group="show", help="Print one JSON object instead of text.")


def summarize(out_dir: str | os.PathLike) -> dict:
    """Per format: number of shards and files, tokens, samples, bytes, first and last file."""
    out = Path(out_dir)
    index = ScheduleDir(out).shards_index()
    formats = {}
    for fmt in index.get("formats") or list(index["shards"]):
        shards = index["shards"][fmt]
        files = [f for s in shards for f in s["files"]] + index.get("dataset_files", {}).get(fmt, [])
        formats[fmt] = {
            "shards": len(shards),
            "files": len(files),
            "bytes": sum(f["bytes"] for f in files),
            "tokens": sum(s["tokens"] for s in shards),
            "samples": sum(s["samples"] for s in shards),
            "rows": sum(s["rows"] for s in shards) if shards and "rows" in shards[0] else None,
            "spanning": sum(bool(s.get("continues")) for s in shards),
            "first": shards[0]["files"][0]["path"] if shards else None,
            "last": shards[-1]["files"][-1]["path"] if shards else None,
            "directory": fmt,
        }
    return {
        "out": str(out),
        "n_samples": index["n_samples"],
        "n_tokens": index["n_tokens"],
        "n_shards": index.get("n_shards"),
        "shard_tokens": index.get("shard_tokens"),
        "eos_id": index["eos_id"],
        "bos_id": index.get("bos_id"),
        "pad_id": index.get("pad_id"),
        "align_tokens": index.get("align_tokens"),
        "pack": index.get("pack"),
        "vocab_size": index["vocab_size"],
        "token_dtype": index.get("token_dtype"),
        "formats": formats,
    }


def shard_table(out_dir: str | os.PathLike, fmt: str | None = None) -> list[dict]:
    """One row per shard of ``fmt`` (default: the first format): where it begins and ends in the order."""
    index = ScheduleDir(out_dir).shards_index()
    fmt = fmt or (index.get("formats") or list(index["shards"]))[0]
    if fmt not in index["shards"]:
        raise InputError(f"--format {fmt}: not written here; this directory has {', '.join(index['shards'])}")
    return [{"format": fmt, "index": r["index"], "first_sample": r["start"], "first_offset": r.get("first_offset", 0),
             "last_sample": r["stop"] - 1, "continues": bool(r.get("continues")), "samples": r["samples"],
             "tokens": r["tokens"], "overlap": r.get("overlap", 0), "pad": r.get("pad", 0),
             "files": [f["path"] for f in r["files"]]} for r in index["shards"][fmt]]


def order_row(out_dir: str | os.PathLike, position: int) -> dict:
    """``doc_id``, ``cluster`` and ``repeat`` at ``position`` of ``order.parquet`` (one row group read)."""
    return ScheduleDir(out_dir).order_row(position)


def sample_report(
    out_dir: str | os.PathLike,
    position: int,
    *,
    fmt: str | None = None,
    decode: bool = False,
    tokenizer: str | None = None,
) -> dict:
    """Everything about the sample at ``position``: its order row, its shard, its tokens in each
    format (and whether the formats agree), and its text when ``decode``."""
    out = Path(out_dir)
    sd = ScheduleDir(out)
    report = {"position": position, **sd.order_row(position)}
    report["document"] = document_of(sd, report["doc_id"])
    if sd.dry_run:
        return report
    index = sd.shards_index()
    formats = [fmt] if fmt else (index.get("formats") or list(index["shards"]))
    tokens = {}
    for f in formats:
        recs = find_shards(index, f, position)
        tokens[f] = sd.read_sample(f, position, index)
        report.setdefault("shards", [r["index"] for r in recs])
        report.setdefault("shard", recs[0]["index"])
        report.setdefault("shard_first_sample", recs[0]["start"])
    report["tokens"] = {f: t.tolist() for f, t in tokens.items()}
    first = next(iter(tokens.values()))
    report["n_tokens"] = len(first)
    report["formats_agree"] = all(np.array_equal(first, t) for t in tokens.values())
    bos, eos = index.get("bos_id"), index["eos_id"]
    report["ends_with_eos"] = eos is None or bool(len(first) and int(first[-1]) == eos)
    report["starts_with_bos"] = bos is None or bool(len(first) and int(first[0]) == bos)
    if decode:
        settings = ScheduleDir(out).settings
        recorded_tok = settings.get("tokenizer_digest") or {}
        spec = tokenizer or settings.get("tokenizer")
        if not spec:
            raise InputError(f"{out / 'manifest.json'}: records no tokenizer; pass --tokenizer to decode")
        from .tokens.tokenizer import load_tokenizer

        if not tokenizer and recorded_tok.get("path") and not Path(spec).expanduser().exists() \
                and Path(recorded_tok["path"]).exists():
            spec = recorded_tok["path"]  # a relative path recorded from another working directory
        tok = load_tokenizer(spec, require_eos=False)
        recorded = recorded_tok.get("sha256")
        if recorded and recorded != tok.digest():
            report["warning"] = (f"tokenizer {spec} differs from the one recorded in manifest.json "
                                 f"(sha256 {tok.digest()[:12]} vs {recorded[:12]}); the text may be wrong")
        report["tokenizer"] = spec
        report["text"] = tok.decode(first.tolist())
    return report


def document_of(sd: ScheduleDir, doc_id: int) -> dict | None:
    """Where a sample's document comes from (source file, row, the user's id), when the embed directory
    that the schedule recorded is still there as it was (or kept as the generation an ``embed --incremental``
    replaced); None otherwise (rebuilt since: its rows may be other documents)."""
    from .artifacts.manifest import unchanged_upstream
    from .embed.directory import EmbedDir

    path = unchanged_upstream(sd.info.upstream("embed"))
    return EmbedDir(path).document(doc_id) if path is not None else None


def _ids(ids: list[int], limit: int) -> str:
    if limit and len(ids) > limit:
        head = ", ".join(map(str, ids[: limit // 2]))
        tail = ", ".join(map(str, ids[-(limit - limit // 2):]))
        return f"[{head}, ... {len(ids) - limit} more ..., {tail}]"
    return "[" + ", ".join(map(str, ids)) + "]"


def format_summary(s: dict) -> list[str]:
    delims = ", ".join(x for x in (f"BOS id {s['bos_id']} before" if s.get("bos_id") is not None else "",
                                   f"EOS id {s['eos_id']} after" if s.get("eos_id") is not None else "") if x)
    if s.get("align_tokens"):
        cut = (f"{s['n_shards']} shards of a multiple of {s['align_tokens']:,} tokens + 1 look-ahead "
               f"(samples may span shards; last shard padded with id {s['pad_id']})")
    elif s.get("pack"):
        cut = (f"{s['n_shards']} shards of whole {s['pack']:,}-token rows (samples may span rows and shards; "
               f"last row padded with id {s['pad_id']})")
    else:
        cut = f"{s['n_shards']} shards of <= {s['shard_tokens']:,} tokens, whole samples"
    lines = [
        f"{s['out']}: {s['n_samples']:,} samples, {s['n_tokens']:,} tokens "
        f"({s['token_dtype']}, vocab {s['vocab_size']:,}, {delims or 'no delimiters'}), {cut}"
    ]
    for fmt, f in s["formats"].items():
        rows = f" {f['rows']:,} rows" if f.get("rows") is not None else ""
        span = f", {f['spanning']} end inside a sample" if f.get("spanning") else ""
        lines.append(
            f"  {fmt:<9} {f['shards']:>5} shards {f['files']:>6} files {f['bytes']:>14,} bytes  "
            f"{f['tokens']:,} tokens {f['samples']:,} samples{rows}{span}  {f['first']} .. {f['last']}"
        )
    return lines


def format_shard_table(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        head = (f"starts inside sample {r['first_sample']} at token {r['first_offset']}" if r["first_offset"]
                else f"starts with sample {r['first_sample']}")
        tail = f"ends inside sample {r['last_sample']}" if r["continues"] else f"ends with sample {r['last_sample']}"
        extra = "".join([f", +{r['overlap']} look-ahead" if r["overlap"] else "",
                         f", +{r['pad']} pad" if r["pad"] else ""])
        out.append(f"  {r['format']} shard {r['index']}: {head}, {tail}; {r['samples']:,} samples begin here, "
                   f"{r['tokens']:,} tokens{extra}  {', '.join(r['files'])}")
    return out


def _document_line(doc: dict | None) -> str:
    if doc is None:
        return "  document: (its embed directory is gone or was rebuilt since this schedule)"
    extra = ", ".join(f"{k} {v!r}" for k, v in doc.items() if k not in ("source", "row", "n_chars"))
    return f"  document: {doc['source']}, row {doc['row']}, {doc['n_chars']:,} characters" + (f", {extra}" if extra else "")


def format_sample(r: dict, max_tokens: int = 64) -> list[str]:
    head = f"sample {r['position']}: doc_id {r['doc_id']}, cluster {r['cluster']}, repeat {r['repeat']}"
    if "tokens" not in r:  # a dry run: the order only
        return [head, _document_line(r.get("document"))]
    lines = [
        f"{head}; shard {', '.join(map(str, r.get('shards', [r['shard']])))} "
        f"(its first sample is {r['shard_first_sample']}), {r['n_tokens']} tokens incl. delimiters"
        + ("" if r["ends_with_eos"] else " (WARNING: does not end with EOS)")
        + ("" if r.get("starts_with_bos", True) else " (WARNING: does not start with BOS)"),
        _document_line(r.get("document")),
    ]
    toks = r["tokens"]
    if r["formats_agree"]:
        lines.append(f"  tokens ({', '.join(toks)} agree): {_ids(next(iter(toks.values())), max_tokens)}")
    else:
        lines.append("  WARNING: the formats disagree")
        for fmt, ids in toks.items():
            lines.append(f"  {fmt:<9} {_ids(ids, max_tokens)}")
    if "warning" in r:
        lines.append(f"  WARNING: {r['warning']}")
    if "text" in r:
        lines.append(f"  text ({r['tokenizer']}):")
        lines.extend("    " + line for line in r["text"].splitlines() or [""])
    return lines
