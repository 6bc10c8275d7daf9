"""The README's demo figures, measured: run the demo, time it, read its keywords, write the README.

    python scripts/demo_figures.py                       # run `make demo` in a temporary folder, print the figures
    python scripts/demo_figures.py --write-readme        # ... and write them into README.md
    python scripts/demo_figures.py --fresh-clone ...     # `make demo` in a fresh clone of HEAD: .venv creation included
    python scripts/demo_figures.py --json F ...          # also keep the figures; --from-json F re-renders them

README.md holds the figures between ``<!-- demo-figures:NAME -->`` and ``<!-- /demo-figures -->``
markers; nothing between them is written by hand. ``tests/test_readme_figures.py`` reruns the
demo's pipeline and checks that the README's document count and keywords are what it gives;
the times are this script's measurement (the machine and the date are written with them).

The demo is the Makefile's own target, run from another folder (``make -f CHECKOUT/Makefile demo``),
so the figures are those of what a user runs; each step's time is the one its summary line prints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchlib import cpu_model  # noqa: E402

README = ROOT / "README.md"
#: keyword lines shown in the README: the clusters with the highest mean similarity (the most coherent)
N_CLUSTERS, N_KEYWORDS = 4, 5
STEP_TIME = {  # a step's time, as its summary line prints it
    "embed": re.compile(r"^embed: ([\d,]+) docs.* in ([\d.]+) s \(", re.M),
    "cluster": re.compile(r"^cluster: .* in ([\d.]+)s$", re.M),
    "schedule": re.compile(r"^schedule: .* in ([\d.]+)s$", re.M),
    "report": re.compile(r"^report: .* in ([\d.]+)s;", re.M),
}


def run_demo(folder: Path, makefile: Path) -> tuple[float, str]:
    """``make -f MAKEFILE demo`` in ``folder``: (wall seconds, output)."""
    # a new user's cache: nothing tokenized before (the token cache would otherwise serve an earlier demo's tokens)
    env = {**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1", "CLUSTERCLIP_CACHE": str(folder / ".clusterclip-cache")}
    started = time.perf_counter()
    r = subprocess.run(["make", "-f", str(makefile), "--no-print-directory", "demo"], cwd=folder, env=env,
                       capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if r.returncode != 0:
        sys.exit(f"make demo failed in {folder}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return seconds, r.stdout + r.stderr


def keywords(cluster_dir: Path, clusterclip: str) -> list[list[str]]:
    """The top keywords of the ``N_CLUSTERS`` clusters with the highest mean similarity (ties: lower id)."""
    r = subprocess.run([clusterclip, "clusters", str(cluster_dir), "--json", "--quiet"], capture_output=True,
                       text=True, check=True)
    rows = json.loads(r.stdout)["clusters"]
    rows = sorted((row for row in rows if row["size"] > 0 and row["keywords"]),
                  key=lambda row: (-row["mean_similarity"], row["cluster"]))
    return [row["keywords"][:N_KEYWORDS] for row in rows[:N_CLUSTERS]]


def keywords_text(lines: list[list[str]]) -> str:
    return ", ".join('"' + ", ".join(words) + '"' for words in lines)


def blocks(figures: dict) -> dict[str, str]:
    """The text of each README block from the measured figures."""
    t = figures["steps"]
    setup = ("creating `.venv` included" if figures["fresh_clone"] else "`.venv` already built")
    times = (f"`make demo` took {figures['make_demo_s']:.0f} s ({setup}; embedding the "
             f"{figures['n_docs']:,} documents {t['embed']:.0f} s, cluster {t['cluster']:.1f} s, schedule "
             f"{t['schedule']:.1f} s, report {t['report']:.1f} s; measured by `python scripts/demo_figures.py"
             f"{' --fresh-clone' if figures['fresh_clone'] else ''}` on {figures['machine']}, {figures['date']})")
    kw = (f"the {N_CLUSTERS} clusters with the highest mean similarity have the keywords "
          f"{keywords_text(figures['keywords'])}")
    return {"times": times, "keywords": kw}


def replace_blocks(text: str, new: dict[str, str]) -> str:
    for name, body in new.items():
        pattern = re.compile(rf"(<!-- demo-figures:{name} -->)(.*?)(<!-- /demo-figures -->)", re.S)
        if not pattern.search(text):
            sys.exit(f"README.md: no <!-- demo-figures:{name} --> ... <!-- /demo-figures --> block")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(3), text)
    return text


def read_block(text: str, name: str) -> str:
    m = re.search(rf"<!-- demo-figures:{name} -->(.*?)<!-- /demo-figures -->", text, re.S)
    return m.group(1) if m else ""


def machine() -> str:
    return f"{os.cpu_count()} cores ({cpu_model()}), load {os.getloadavg()[0]:.1f} at the start"


def measure(fresh_clone: bool, keep: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="clusterclip-demo-") as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if fresh_clone:
            checkout = folder / "clusterclip"
            subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
            makefile, project = checkout / "Makefile", checkout
        else:
            makefile, project = ROOT / "Makefile", folder
        load = machine()
        seconds, output = run_demo(project, makefile)
        steps = {}
        for step, pattern in STEP_TIME.items():
            m = pattern.search(output)
            if m is None:
                sys.exit(f"no `{step}` summary line in the output of make demo:\n{output[-3000:]}")
            steps[step] = float(m.groups()[-1])
        n_docs = int(STEP_TIME["embed"].search(output).group(1).replace(",", ""))
        venv = (project if fresh_clone else ROOT) / ".venv" / "bin" / "clusterclip"
        return {"make_demo_s": seconds, "steps": steps, "n_docs": n_docs, "fresh_clone": fresh_clone,
                "keywords": keywords(project / "demo" / "cl", str(venv)), "machine": load,
                "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fresh-clone", action="store_true", help="clone HEAD and run `make demo` there (.venv included)")
    ap.add_argument("--write-readme", action="store_true", help="write the figures into README.md")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    ap.add_argument("--from-json", type=Path, help="no run: the figures a run wrote with --json")
    args = ap.parse_args()
    figures = json.loads(args.from_json.read_text()) if args.from_json else measure(args.fresh_clone, args.keep)
    text = blocks(figures)
    print(json.dumps(figures, indent=2))
    for name, body in text.items():
        print(f"{name}: {body}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.write_readme:
        README.write_text(replace_blocks(README.read_text("utf-8"), text), "utf-8")
        print(f"wrote {README}")


if __name__ == "__main__":
    main()
