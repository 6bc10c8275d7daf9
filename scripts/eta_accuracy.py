"""How right the progress bars' ETAs are on a real run: the error at 25, 50 and 75 % of each bar.

    python scripts/eta_accuracy.py                      # 2,000 stdlib docstrings: embed, cluster, schedule
    python scripts/eta_accuracy.py --docs 8000 --max-length 256 --json eta.json

Runs the real pipeline in a temporary folder with ``CLUSTERCLIP_PROGRESS_LOG`` set (each bar
appends its done/total/ETA at every redraw, once a second) and compares, for every bar that ran
for at least ``--min-seconds``, the ETA shown at 25 %, 50 % and 75 % of its duration with the time
it really still took: ``error = ETA shown / time really left - 1`` (+0.10: the bar said 10 % too
long). Then the tokenize bar on its own, where documents differ most: the corpus's documents
shortest first, repeated ``--tokenize-repeats`` times, on Hugging Face ``tokenizers`` in one
worker (slow enough to watch); its peer in the same run is the ETA a bar counting documents gives
(documents left over documents per second), computed from the same log. The load of the machine
is printed with the figures: on a shared machine they move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
FRACTIONS = (0.25, 0.50, 0.75)


def errors_of(records: list[dict], min_seconds: float) -> dict:
    """``{bar: {"seconds": run time, "errors": {"25%": e, ...}}}`` from one run's progress log."""
    bars: dict[str, list[dict]] = {}
    for r in records:
        bars.setdefault(r["bar"], []).append(r)
    out = {}
    for name, rs in bars.items():
        start, end = rs[0]["t"], rs[-1]["t"]
        if end - start < min_seconds:
            continue
        errors = {}
        for f in FRACTIONS:
            at = start + f * (end - start)
            r = min(rs, key=lambda x: abs(x["t"] - at))
            left = end - r["t"]
            errors[f"{round(100 * f)}%"] = None if r["eta"] is None or left <= 0 else round(r["eta"] / left - 1, 3)
        out[name] = {"seconds": round(end - start, 1), "errors": errors}
    return out


def run(args) -> dict:
    from build_demo_corpus import iter_docstrings
    from train_demo_tokenizer import train

    work = Path(tempfile.mkdtemp(prefix="eta-"))
    corpus = work / "docs.jsonl"
    with corpus.open("w") as fh:
        for d in iter_docstrings(max_docs=args.docs, min_chars=80):
            fh.write(json.dumps(d) + "\n")
    tokenizer = work / "tokenizer.json"
    train(corpus, vocab_size=4096).save(str(tokenizer))
    log = work / "progress.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("CLUSTERCLIP_NO_PROGRESS", "TQDM_DISABLE")}
    env.update(CLUSTERCLIP_PROGRESS_LOG=str(log), PYTHONPATH=str(ROOT))
    commands = [
        ["embed", corpus, "--out", work / "emb", "--max-length", args.max_length],
        ["cluster", work / "emb", "--out", work / "cl", "--k", args.k],
        ["schedule", work / "emb", work / "cl", "--out", work / "sched", "--tokenizer", tokenizer, "--epochs", 4,
         "--format", "bin,parquet", "--workers", 1],
    ]
    for c in commands:
        subprocess.run([sys.executable, "-m", "clusterclip", *map(str, c)], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    bars = errors_of(records, args.min_seconds)
    bars.update(_tokenize_alone(work, corpus, tokenizer, args))
    return {"docs": args.docs, "max_length": args.max_length, "load": os.getloadavg(),
            "command": " ".join(sys.argv), "bars": bars}


def _tokenize_alone(work: Path, corpus: Path, tokenizer: Path, args) -> dict:
    """The tokenize bar over documents shortest first (its ETA, and a document-count ETA as the peer)."""
    from clusterclip.progress import rate_eta
    from clusterclip.tokens.build import build_token_store
    from clusterclip.tokens.tokenizer import load_tokenizer

    texts = sorted((json.loads(line)["text"] for line in corpus.read_text().splitlines()), key=len)
    texts = [t for t in texts for _ in range(args.tokenize_repeats)]
    log = work / "tokenize.jsonl"
    os.environ["CLUSTERCLIP_PROGRESS_LOG"] = str(log)
    for key in ("CLUSTERCLIP_NO_PROGRESS", "TQDM_DISABLE"):
        os.environ.pop(key, None)
    tok = load_tokenizer(tokenizer, fast=False)
    build_token_store(list(enumerate(texts)), len(texts), tok, work / "store", total=len(texts), workers=1,
                      chars=[len(t) for t in texts], batch_docs=256)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    t0 = records[0]["t"]
    peer = [{**r, "bar": "tokenize, by documents (peer)", "eta": rate_eta(r["total"], r["n"], 0, r["t"] - t0)}
            for r in records]
    renamed = [{**r, "bar": "tokenize, shortest first"} for r in records]
    return errors_of(renamed + peer, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--min-seconds", type=float, default=4.0, help="leave out bars shorter than this")
    ap.add_argument("--tokenize-repeats", type=int, default=20, help="copies of each document in the tokenize run")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    result = run(args)
    print(f"ETA error (ETA shown / time really left - 1) at 25/50/75 % of each bar; {result['docs']} documents, "
          f"load {result['load'][0]:.1f} {result['load'][1]:.1f} {result['load'][2]:.1f}")
    for name, r in result["bars"].items():
        errs = "  ".join(f"{k}: {'?' if v is None else f'{v:+.0%}'}" for k, v in r["errors"].items())
        print(f"  {name:<12} {r['seconds']:>7.1f} s   {errs}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
