"""The README's proxy figures, measured: run `make ablation` and `make mixture-search`, read their outputs,
write the README's ablation table and mixture-search example.

    python scripts/proxy_figures.py                       # both targets in a temporary folder, print the blocks
    python scripts/proxy_figures.py --write-readme        # ... and write them into README.md
    python scripts/proxy_figures.py --fresh-clone ...     # in a fresh clone of HEAD (.venv creation included)
    python scripts/proxy_figures.py --keep DIR ...        # run in DIR (kept; a rerun reuses what is done)
    python scripts/proxy_figures.py --json F ...          # also keep the figures; --from-json F re-renders them
    python scripts/proxy_figures.py --targets ablation    # one target (its README block only); with --json F
                                                          # the figures merge into F's, target by target

README.md holds the figures between ``<!-- proxy-figures:NAME -->`` and ``<!-- /proxy-figures -->``;
nothing between them is written by hand. The targets are the Makefile's own, run from another folder
(``make -f CHECKOUT/Makefile ablation``), so the figures are what a user gets; the wall time of each
target, the load average before and after, the machine and the date are written beside them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from benchlib import cpu_model  # noqa: E402

README = ROOT / "README.md"
TARGETS = {"ablation": "ablation", "search": "mixture-search"}  #: the figures' names -> the Makefile's targets
COLUMNS = (("balanced", "cluster-balanced"), ("rare_half", "rare half"), ("common_half", "common half"),
           ("overall", "overall"))


def run_target(folder: Path, makefile: Path, target: str, env: dict[str, str]) -> dict:
    """``make -f MAKEFILE TARGET`` in ``folder``: wall seconds, load before and after, and the CPU seconds of all
    its processes (on a busy machine, ``cpu_seconds / cores`` is what it takes with the cores to itself)."""
    before, cpu = os.getloadavg()[0], cpu_seconds()
    started = time.perf_counter()
    r = subprocess.run(["make", "-f", str(makefile), "--no-print-directory", target], cwd=folder, env=env,
                       capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if r.returncode != 0:
        sys.exit(f"make {target} failed in {folder}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return {"seconds": seconds, "load_before": before, "load_after": os.getloadavg()[0],
            "cpu_seconds": cpu_seconds() - cpu, "cores": len(os.sched_getaffinity(0))}


def cpu_seconds() -> float:
    """User + system CPU seconds of the finished child processes (and theirs) of this process."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fresh_clone(source: Path, folder: Path, env: dict[str, str]) -> tuple[Path, dict]:
    """Clone ``source`` at its HEAD into ``folder/clusterclip``, then, as a new user would, ``make demo`` (which
    creates the clone's ``.venv``, timed apart) from ``folder``: (the clone's Makefile, the setup's times)."""
    checkout = folder / "clusterclip"
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    if not (checkout / ".git").exists():  # (--keep DIR: a rerun reuses its clone, at the commit asked for)
        subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(source), str(checkout)], check=True)
    subprocess.run(["git", "-C", str(checkout), "fetch", "--quiet", str(source), commit], check=True)
    subprocess.run(["git", "-C", str(checkout), "checkout", "--quiet", commit], check=True)
    makefile = checkout / "Makefile"
    setup = {"commit": commit[:12],
             "venv": run_target(folder, makefile, str(checkout / ".venv" / ".installed"), env),
             "demo": run_target(folder, makefile, "demo", env)}
    return makefile, setup


def read_figures(folder: Path, target: str) -> dict:
    """The numbers of one target's outputs, read through their owners."""
    sys.path.insert(0, str(ROOT))
    from clusterclip.mixsearch.fitdir import FitDir
    from clusterclip.mixsearch.weights import read_provenance
    from clusterclip.proxy.runfiles import RunsDir

    if target == "ablation":
        return {"ablation": RunsDir(folder / "demo" / "ablation" / "runs").statistics}
    search = RunsDir(folder / "demo" / "search" / "runs")
    check = RunsDir(folder / "demo" / "search" / "check")
    fit = FitDir(folder / "demo" / "search" / "fit").fit_record()
    side = read_provenance(folder / "demo" / "search" / "weights.csv")
    return {"search_runs": len(search.statistics["runs"]), "search_tokens": search.statistics["train_tokens"],
            "fit": {k: fit[k] for k in ("model", "target", "leave_one_out")},
            "proposal": side["proposal"] | {"constraints": side["constraints"]}, "check": check.statistics}


def setup_note(when: dict) -> str:
    """Where a target ran: in a fresh clone after its ``.venv`` and ``make demo`` (the times of both), else nothing."""
    setup = when.get("fresh_clone")
    if not setup:
        return ""
    return (f" in a fresh clone of {setup['commit']}, after creating its `.venv` ({setup['venv']['seconds']:.0f} s) "
            f"and its `make demo` ({setup['demo']['seconds']:.0f} s)")


def cpu_note(t: dict) -> str:
    """The CPU time of a target and what it makes on free cores (when measured)."""
    if "cpu_seconds" not in t:
        return ""
    return (f", {t['cpu_seconds'] / 60:.1f} CPU-minutes: {t['cpu_seconds'] / t['cores'] / 60:.1f} min on "
            f"{t['cores']} free cores")


def cell(c: dict, key: str) -> str:
    return f"{c[f'{key}_mean']:.3f} ± {c[f'{key}_spread']:.3f}"


def ablation_block(f: dict) -> str:
    st, t = f["ablation"], f["times"]["ablation"]
    when = f["when"]["ablation"]
    rows = ["| schedule | " + " | ".join(h for _, h in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, c in st["schedules"].items():
        rows.append(f"| `{name}` | " + " | ".join(cell(c, k) for k, _ in COLUMNS) + " |")
    params = st["runs"][0]["parameters"]["total"]
    seeds = next(iter(st["schedules"].values()))["seeds"]
    rates = sorted(r["tokens_per_second"] for r in st["runs"])
    threads = st["runs"][0]["runtime"]["threads"]
    return "\n".join(rows) + "\n\n" + against_random(st["schedules"]) + (
        f"\n\nHeld-out loss (nats per token, mean ± standard deviation over {seeds} seeds; lower is better) of a "
        f"{params / 1e6:.1f} M-parameter Llama trained on {st['train_tokens']:,} tokens of each schedule of the demo; "
        f"rare half / common half: the cluster-balanced loss over the {st['clusters'] // 2} clusters with the fewest "
        f"/ most documents. Each run trained at {rates[len(rates) // 2]:,.0f} tokens/s (median of {len(rates)}; "
        f"{threads} thread{'s' if threads > 1 else ''} each, runs side by side). "
        f"`make ablation` took {t['seconds'] / 60:.1f} min (load {t['load_before']:.1f} -> "
        f"{t['load_after']:.1f}{cpu_note(t)}){setup_note(when)}; measured by `python scripts/proxy_figures.py{when['flags']}` on {when['machine']}, "
        f"{when['date']}).")


def against_random(schedules: dict) -> str:
    """Each schedule's difference to ``random`` (cluster-balanced and rare half), told against the spreads."""
    base = schedules.get("random")
    if base is None:
        return ""
    said = []
    for name, c in schedules.items():
        if name == "random":
            continue
        parts = []
        for key, label in (("balanced", "cluster-balanced"), ("rare_half", "rare half")):
            diff, spread = c[f"{key}_mean"] - base[f"{key}_mean"], max(c[f"{key}_spread"], base[f"{key}_spread"])
            verdict = (f"{'lower' if diff < 0 else 'higher'} by more than the spread {spread:.3f}" if abs(diff) > spread
                       else f"within the spread {spread:.3f}: no difference")
            parts.append(f"{label} {diff:+.3f} ({verdict})")
        said.append(f"`{name}` {', '.join(parts)}")
    return "Against `random`: " + "; ".join(said) + "."


def proposal_verdict(natural: dict, proposed: dict) -> str:
    """The measured cluster-balanced loss of the proposal against the natural mixture's, told against the spread."""
    diff = proposed["balanced_mean"] - natural["balanced_mean"]
    spread = max(proposed["balanced_spread"], natural["balanced_spread"])
    if abs(diff) <= spread:
        return f"{diff:+.3f}, within the spread {spread:.3f}: no measured difference"
    if diff < 0:
        return f"{diff:+.3f}: the proposal trains a better proxy, by more than the spread {spread:.3f}"
    return f"{diff:+.3f}: the proposal trains a worse proxy, by more than the spread {spread:.3f}: the fit did not hold up"


def search_block(f: dict) -> str:
    loo, p, check, t = f["fit"]["leave_one_out"], f["proposal"], f["check"]["schedules"], f["times"]["search"]
    when = f["when"]["search"]

    def num(v):
        return "n/a" if v is None else f"{v:+.2f}"

    fits = "; ".join(f"{m} Spearman {num(d['spearman'])}, R² {num(d['r2'])}" for m, d in loo.items())
    nat, prop = check.get("natural"), check.get("proposed")
    measured = (f"measured with 3 seeds: natural {cell(nat, 'balanced')}, proposed {cell(prop, 'balanced')} "
                f"({proposal_verdict(nat, prop)})" if nat and prop else "")
    return (f"On the demo (8 clusters, {f['search_runs']} Dirichlet mixtures, {f['search_tokens']:,} tokens each), "
            f"leave-one-out: {fits}; chosen: {f['fit']['model']}. Proposed (KL {p['kl_to_natural']:.2f} to the "
            f"natural mixture, limit {p['constraints']['max_kl']:g}): predicted {f['fit']['target']} loss "
            f"{p['predicted_loss']:.3f} against {p['natural_predicted_loss']:.3f} for the natural mixture; {measured}. "
            f"`make mixture-search` took {t['seconds'] / 60:.1f} min (load {t['load_before']:.1f} -> "
            f"{t['load_after']:.1f}{cpu_note(t)}){setup_note(when)}; `python scripts/proxy_figures.py{when['flags']}`, {when['machine']}, "
            f"{when['date']}).")


def replace_blocks(text: str, new: dict[str, str]) -> str:
    for name, body in new.items():
        pattern = re.compile(rf"(<!-- proxy-figures:{name} -->\n).*?(\n<!-- /proxy-figures -->)", re.S)
        if not pattern.search(text):
            sys.exit(f"README.md: no <!-- proxy-figures:{name} --> block")
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    return text


def machine() -> str:
    return f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores"


def measure(targets: list[str], clone_from: Path | None, keep: Path | None) -> dict:
    """Run the targets (in order) and read their figures; each with its wall time, load, machine and date.
    ``clone_from``: run them in a fresh clone of that checkout's HEAD, after its ``make demo``."""
    flags = (f" --fresh-clone{'' if clone_from == ROOT else f' --clone-from {clone_from}'}" if clone_from else "") + (
        "" if targets == list(TARGETS) else f" --targets {','.join(targets)}")
    out: dict = {"times": {}, "when": {}}
    with tempfile.TemporaryDirectory(prefix="clusterclip-proxy-") as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        # a new user's token cache (an earlier run's would serve its tokens) and no progress bars in the logs
        env = {**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1", "CLUSTERCLIP_CACHE": str(folder / ".clusterclip-cache")}
        env.pop("PYTHONPATH", None)  # the clone's own package, installed in its .venv
        makefile, setup = ROOT / "Makefile", None
        if clone_from:
            makefile, setup = fresh_clone(clone_from, folder, env)
        for target in targets:
            out["times"][target] = run_target(folder, makefile, TARGETS[target], env)
            out["when"][target] = {"machine": machine(), "date": datetime.date.today().isoformat(), "flags": flags,
                                   "fresh_clone": setup}
            out.update(read_figures(folder, target))
    return out


def merge(old: dict, new: dict) -> dict:
    """Figures measured before (``--json F`` that exists) updated by the targets measured now."""
    return {**old, **new, "times": {**old.get("times", {}), **new.get("times", {})},
            "when": {**old.get("when", {}), **new.get("when", {})}}


def blocks_of(figures: dict) -> dict[str, str]:
    """The README blocks of the targets measured (the others are left as they are)."""
    render = {"ablation": ablation_block, "search": search_block}
    return {name: render[name](figures) for name in TARGETS if name in figures.get("times", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fresh-clone", action="store_true",
                    help="clone HEAD, run make demo there (its .venv included), then the targets")
    ap.add_argument("--clone-from", type=Path, default=ROOT, help="the checkout --fresh-clone clones [default: this one]")
    ap.add_argument("--keep", type=Path, help="run in this folder and keep it")
    ap.add_argument("--targets", default=",".join(TARGETS), help="which figures to measure: ablation,search")
    ap.add_argument("--write-readme", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures to this file (merged into it if it exists)")
    ap.add_argument("--from-json", type=Path, help="render figures measured before")
    args = ap.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    if unknown := set(targets) - set(TARGETS):
        sys.exit(f"--targets: {', '.join(sorted(unknown))} unknown; choose among {', '.join(TARGETS)}")
    figures = json.loads(args.from_json.read_text()) if args.from_json else measure(
        targets, args.clone_from.resolve() if args.fresh_clone else None, args.keep)
    if args.json:
        figures = merge(json.loads(args.json.read_text()) if args.json.exists() else {}, figures)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    blocks = blocks_of(figures)
    for name, body in blocks.items():
        print(f"--- {name}\n{body}\n")
    if args.write_readme:
        README.write_text(replace_blocks(README.read_text("utf-8"), blocks), "utf-8")
        print(f"wrote {README}")


if __name__ == "__main__":
    main()
