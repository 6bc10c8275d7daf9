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


def _sections() -> list[tuple[str, list[str], list[str]]]:
    """(title, schedule flags, python blocks) of every README section that has Python blocks."""
    text = README.read_text("utf-8")
    out = []
    for part in re.split(r"^(?=##+ )", text, flags=re.MULTILINE):
        title = part.splitlines()[0] if part.strip() else ""
        blocks = re.findall(r"^```(\w*)\n(.*?)^```", part, flags=re.MULTILINE | re.DOTALL)
        python = [code for lang, code in blocks if lang == "python"]
        if not python:
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


def test_every_python_snippet_has_a_schedule_command():
    assert len(SECTIONS) >= 9
    assert sum(len(p) for _, _, p in SECTIONS) == README.read_text().count("```python")
    for title, flags, _ in SECTIONS:
        assert flags, f"{title}: no `clusterclip schedule` command before its Python block"


@pytest.mark.slow
@pytest.mark.parametrize("title,flags,blocks", SECTIONS, ids=[t.strip("# ") for t, _, _ in SECTIONS])
def test_readme_snippet_runs(tmp_path, embedded, clustered, demo_tokenizer, title, flags, blocks):
    out = tmp_path / "OUT"
    run_cli(["schedule", embedded, clustered, "--out", out, "--tokenizer", demo_tokenizer, "--samples", 120, *flags])
    for code in blocks:
        mds = code.startswith(ENV_LINE)
        py = _env_python() if mds else sys.executable  # builds .venv-mds under CI, as the MDS test does
        script = tmp_path / "snippet.py"
        script.write_text(code.replace("OUT/", f"{out}/").replace('"OUT"', f'"{out}"'), "utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        r = subprocess.run([py, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
                           check=False)
        assert r.returncode == 0, f"{title} snippet failed:\n{code}\n{r.stderr[-3000:]}"
