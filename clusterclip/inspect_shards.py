"""Look inside a ``schedule`` output: the shards of each format, and any sample read back from them.

Tokens are read from the shard files through each format's own layout (llm.c header + flat
stream, Megatron ``.idx`` + ``.bin``, MDS shard offsets, Parquet rows), not from a cache, so
what :func:`sample_report` shows is what a trainer will read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import InputError
from .schedule.directory import ScheduleDir
from .shards import FORMATS, find_shard, read_index, read_sample

ORDER_FILE = "order.parquet"


def _manifest(out_dir: Path) -> dict:
    p = out_dir / "manifest.json"
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text("utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


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
        "vocab_size": index["vocab_size"],
        "token_dtype": index.get("token_dtype"),
        "formats": formats,
    }


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
    index = ScheduleDir(out).shards_index()
    formats = [fmt] if fmt else (index.get("formats") or list(index["shards"]))
    if fmt and fmt not in FORMATS:
        raise InputError(f"--format {fmt}: unknown; choose from {', '.join(FORMATS)}")
    report = {"position": position, **order_row(out, position)}
    tokens = {}
    for f in formats:
        rec = find_shard(index, f, position)
        tokens[f] = read_sample(out, f, position, index)
        report.setdefault("shard", rec["index"])
        report.setdefault("shard_first_sample", rec["first_sample"])
    report["tokens"] = {f: t.tolist() for f, t in tokens.items()}
    first = next(iter(tokens.values()))
    report["n_tokens"] = int(len(first))
    report["formats_agree"] = all(np.array_equal(first, t) for t in tokens.values())
    report["ends_with_eos"] = bool(len(first) and int(first[-1]) == index["eos_id"])
    if decode:
        settings = _manifest(out).get("settings") or {}
        recorded_tok = settings.get("tokenizer_digest") or {}
        spec = tokenizer or settings.get("tokenizer")
        if not spec:
            raise InputError(f"{out / 'manifest.json'}: records no tokenizer; pass --tokenizer to decode")
        from .tokenization import load_tokenizer

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


def _ids(ids: list[int], limit: int) -> str:
    if limit and len(ids) > limit:
        head = ", ".join(map(str, ids[: limit // 2]))
        tail = ", ".join(map(str, ids[-(limit - limit // 2):]))
        return f"[{head}, ... {len(ids) - limit} more ..., {tail}]"
    return "[" + ", ".join(map(str, ids)) + "]"


def format_summary(s: dict) -> list[str]:
    lines = [
        f"{s['out']}: {s['n_samples']:,} samples, {s['n_tokens']:,} tokens "
        f"({s['token_dtype']}, vocab {s['vocab_size']:,}, EOS id {s['eos_id']}), "
        f"{s['n_shards']} shards of <= {s['shard_tokens']:,} tokens"
    ]
    for fmt, f in s["formats"].items():
        lines.append(
            f"  {fmt:<9} {f['shards']:>5} shards {f['files']:>6} files {f['bytes']:>14,} bytes  "
            f"{f['tokens']:,} tokens {f['samples']:,} samples  {f['first']} .. {f['last']}"
        )
    return lines


def format_sample(r: dict, max_tokens: int = 64) -> list[str]:
    lines = [
        f"sample {r['position']}: doc_id {r['doc_id']}, cluster {r['cluster']}, repeat {r['repeat']}; "
        f"shard {r['shard']} (its first sample is {r['shard_first_sample']}), {r['n_tokens']} tokens incl. EOS"
        + ("" if r["ends_with_eos"] else " (WARNING: does not end with EOS)")
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
