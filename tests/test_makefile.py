"""The Makefile's pipeline works from any folder: ``make -f CHECKOUT/Makefile report ...`` in a
project of the user's, for real, on a tiny corpus (paths relative to that folder)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import MAX_LENGTH, REPO, write_jsonl, write_parquet

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("make") is None, reason="needs make")]


def _make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1"}
    env.pop("MAKEFLAGS", None)
    return subprocess.run(["make", "-f", str(REPO / "Makefile"), "--no-print-directory", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900, check=False)


def test_pipeline_targets_from_another_folder(tmp_path, small_docs, demo_tokenizer):
    project = tmp_path / "my project"  # a space in the path, too
    project.mkdir()
    write_jsonl(project / "data.jsonl", small_docs)
    shutil.copy(demo_tokenizer, project / "tokenizer.json")
    clusterclip = str(Path(sys.executable).parent / "clusterclip")
    args = ["report", "CORPUS=data.jsonl", "WORK=work", "K=3", "TOKENIZER=tokenizer.json", "FORMATS=bin,parquet",
            f"EMBED_FLAGS=--max-length {MAX_LENGTH}", "SCHEDULE_FLAGS=--samples 60", f"CLUSTERCLIP={clusterclip}"]
    r = _make(project, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    for step in ("emb", "cl", "schedule", "report"):
        assert (project / "work" / step / "manifest.json").is_file(), step
    assert json.loads((project / "work" / "schedule" / "manifest.json").read_text())["statistics"]["samples"] == 60
    before = {step: (project / "work" / step / "manifest.json").read_bytes() for step in ("emb", "cl", "schedule", "report")}
    again = _make(project, *args)  # every step is asked again, and is already done
    assert again.returncode == 0 and again.stdout.count("already done") == 3, again.stdout + again.stderr
    assert before == {step: (project / "work" / step / "manifest.json").read_bytes() for step in before}


def test_help_and_the_checkouts_venv_from_another_folder(tmp_path):
    r = _make(tmp_path, "help")
    assert r.returncode == 0 and "make schedule CORPUS=" in r.stdout, r.stdout + r.stderr
    # without CLUSTERCLIP=, the checkout's own .venv runs the steps, by absolute path (a dry run prints the commands)
    dry = _make(tmp_path, "-n", "cluster", "CORPUS=x.jsonl", "WORK=w")
    assert f"{REPO}/.venv/bin/clusterclip cluster w/emb --out w/cl --k 1000" in dry.stdout, dry.stdout + dry.stderr
    assert not (tmp_path / "w").exists()


def test_ablation_and_mixture_search_targets_run_the_loop(tmp_path):
    """`make ablation` / `make mixture-search` (dry runs): every step of the loop, the same budget for every
    sampler, three seeds, the proposal checked against the natural mixture."""
    ablation = _make(tmp_path, "-n", "ablation", "CLUSTERCLIP=clusterclip")
    assert ablation.returncode == 0, ablation.stdout + ablation.stderr
    out = ablation.stdout
    assert "clusterclip holdout demo/emb demo/cl --out demo/ablation/eval" in out
    for sampler in ("random", "uniform", "clusterclip"):
        assert "--sampler $s" in out and sampler in out
    assert out.count("--tokens 131072") == 2 and out.count("--exclude demo/ablation/eval") == 2
    assert "clusterclip proxy demo/ablation/random demo/ablation/uniform demo/ablation/clusterclip" in out
    assert "--seeds 3" in out
    search = _make(tmp_path, "-n", "mixture-search", "CLUSTERCLIP=clusterclip").stdout
    for step in ("cluster demo/emb --out demo/search/cl --k 8", "mixtures", "fit demo/search/runs",
                 "propose demo/search/fit --out demo/search/weights.csv", "--out demo/search/check --seeds 3"):
        assert step in search, step
    assert not (tmp_path / "demo").exists() or not any((tmp_path / "demo").glob("*/manifest.json"))


def _readme_commands() -> tuple[list[str], list[str]]:
    """The README's pipeline: its first `clusterclip embed/cluster/schedule/report` commands writing to
    `work/{emb,cl,schedule,report}`, and the `make` line of "The pipeline from make" (continuation lines joined,
    comments cut)."""
    text = (REPO / "README.md").read_text("utf-8")
    blocks = ["\n".join(line.split("  #")[0].rstrip() for line in b.replace("\\\n", " ").splitlines())
              for b in re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)]
    lines = [line.strip() for b in blocks for line in b.splitlines()]
    steps = [next(line for line in lines if line.startswith(f"clusterclip {step} ") and f"--out work/{out} " in line + " ")
             for step, out in (("embed", "emb"), ("cluster", "cl"), ("schedule", "schedule"), ("report", "report"))]
    section = text.split("## The pipeline from make", 1)[1]
    block = re.search(r"^```bash\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL).group(1)
    make_line = next(line.strip() for line in block.replace("\\\n", " ").splitlines() if line.startswith("make "))
    return steps, shlex.split(make_line)


def test_the_makefile_finds_the_readme_pipeline_already_done(tmp_path, small_docs, demo_tokenizer):
    """Names agree (issue 26.3): the README's commands, then its `make` line on the same WORK: every step done."""
    steps, make_args = _readme_commands()
    outputs = {"emb", "cl", "schedule", "report"}  # what the Makefile names $(WORK)/emb, /cl, /schedule, /report
    assert "WORK=work" in make_args
    project = tmp_path / "project"
    docs = small_docs[:30]
    write_parquet(project / "data" / "part-0.parquet", {"text": [d["text"] for d in docs]}, row_group_size=8)
    (project / "path" / "to").mkdir(parents=True)
    shutil.copy(demo_tokenizer, project / "path" / "to" / "tokenizer.json")
    env = {**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for command in steps:  # as written, but k 2000 for 30 documents
        r = subprocess.run(command.replace("--k 2000", "--k 3"), shell=True, cwd=project, env=env, capture_output=True,
                           text=True, timeout=900, check=False)
        assert r.returncode == 0, command + "\n" + r.stderr
    before = {s: (project / "work" / s / "manifest.json").read_bytes() for s in outputs}
    args = [a if a != "K=2000" else "K=3" for a in make_args[1:]]
    r = _make(project, *args, f"CLUSTERCLIP={Path(sys.executable).parent / 'clusterclip'}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("already done") == 3 and "report:" in r.stdout, r.stdout  # report's line is its summary
    assert before == {s: (project / "work" / s / "manifest.json").read_bytes() for s in outputs}
