"""Every Python snippet of the README runs as written, against a real ``schedule`` output made
with the flags of the ``clusterclip schedule`` command in the same section.

Each ``### ...`` section of "Reading the shards from a trainer" gives a schedule command and
Python blocks; the test runs that command on the session's embed/cluster fixtures (with the
test tokenizer in place of the hub name), substitutes ``OUT`` with its output directory and runs
each block in a fresh interpreter: the main environment's, or ``.venv-mds``'s when the block
starts with ``# environment: .venv-mds``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
from test_shards_mds import _env_python

from helpers import REPO, run_cli

README = REPO / "README.md"
ENV_LINE = "# environment: .venv-mds"


def _parts() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(title, text, code blocks) of every README section."""
    out = []
    for part in re.split(r"^(?=##+ )", README.read_text("utf-8"), flags=re.MULTILINE):
        title = part.splitlines()[0] if part.strip() else ""
        out.append((title, part, re.findall(r"^```(\w*)\n(.*?)^```", part, flags=re.MULTILINE | re.DOTALL)))
    return out


def _schedule_commands(blocks) -> list[list[str]]:
    """The arguments of every ``clusterclip schedule`` line of the bash blocks (continuation lines joined)."""
    return [shlex.split(line) for lang, code in blocks if lang == "bash"
            for line in code.replace("\\\n", " ").splitlines() if line.startswith("clusterclip schedule")]


def _sections() -> list[tuple[str, list[str], list[str]]]:
    """(title, schedule flags, python blocks) of every README section that has Python blocks and one
    schedule command (sections of several commands: :func:`_walkthroughs`)."""
    out = []
    for title, _, blocks in _parts():
        python = [code for lang, code in blocks if lang == "python"]
        if not python or len(_schedule_commands(blocks)) > 1:
            continue
        flags = []
        for lang, code in blocks:
            cmd = next((line for line in code.replace("\\\n", " ").splitlines()
                        if line.startswith("clusterclip schedule")), None)
            if lang == "bash" and cmd:
                args = shlex.split(cmd)[4:]  # after: clusterclip schedule EMB CL
                skip = {"--out", "--tokenizer"}
                flags = [a for i, a in enumerate(args) if a not in skip and (i == 0 or args[i - 1] not in skip)]
                break
        out.append((title, flags, python))
    return out


SECTIONS = _sections()


def _walkthroughs() -> list[tuple[str, dict[str, str], list[list[str]], list[str]]]:
    """(title, files, schedule commands, python blocks) of every README section whose Python blocks follow
    several ``clusterclip schedule`` commands: the commands run in order in one directory, after the
    files the section gives (a code block right after a line ending in ``NAME`:``) are written there."""
    out = []
    for title, text, blocks in _parts():
        commands = _schedule_commands(blocks)
        python = [code for lang, code in blocks if lang == "python"]
        if python and len(commands) > 1:
            files = dict(re.findall(r"`([\w.-]+)`:\n\n```\w*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL))
            out.append((title, files, commands, python))
    return out


WALKTHROUGHS = _walkthroughs()


def _run_python(tmp_path, code: str, title: str, out=None) -> None:
    mds = code.startswith(ENV_LINE)
    py = _env_python() if mds else sys.executable  # builds .venv-mds under CI, as the MDS test does
    script = tmp_path / "snippet.py"
    if out is not None:
        code = code.replace("OUT/", f"{out}/").replace('"OUT"', f'"{out}"')
    script.write_text(code, "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    r = subprocess.run([py, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
                       check=False)
    assert r.returncode == 0, f"{title} snippet failed:\n{code}\n{r.stderr[-3000:]}"


def test_every_python_snippet_has_a_schedule_command():
    assert len(SECTIONS) >= 9 and len(WALKTHROUGHS) >= 1
    in_sections = sum(len(p) for _, _, p in SECTIONS) + sum(len(p) for *_, p in WALKTHROUGHS)
    assert in_sections == README.read_text().count("```python")
    for title, flags, _ in SECTIONS:
        assert flags, f"{title}: no `clusterclip schedule` command before its Python block"


@pytest.mark.slow
@pytest.mark.parametrize("title,flags,blocks", SECTIONS, ids=[t.strip("# ") for t, _, _ in SECTIONS])
def test_readme_snippet_runs(tmp_path, embedded, clustered, demo_tokenizer, title, flags, blocks):
    out = tmp_path / "OUT"
    run_cli(["schedule", embedded, clustered, "--out", out, "--tokenizer", demo_tokenizer, "--samples", 120, *flags])
    for code in blocks:
        _run_python(tmp_path, code, title, out)


@pytest.mark.slow
@pytest.mark.parametrize("title,files,commands,blocks", WALKTHROUGHS, ids=[t.strip("# ") for t, *_ in WALKTHROUGHS])
def test_readme_walkthrough_runs(tmp_path, monkeypatch, embedded, clustered, demo_tokenizer, title, files, commands,
                                 blocks):
    """Every command as written (work/emb, work/cl: the fixtures; --tokenizer: the test tokenizer), in one
    directory, then every Python block there."""
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text, "utf-8")
    swap = {"work/emb": str(embedded), "work/cl": str(clustered)}
    for command in commands:
        args = [swap.get(a, a) for a in command[1:]]  # after: clusterclip
        args = [str(demo_tokenizer) if i and args[i - 1] == "--tokenizer" else a for i, a in enumerate(args)]
        run_cli(args)
    for code in blocks:
        _run_python(tmp_path, code, title)
