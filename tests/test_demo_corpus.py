"""The demo corpus is the same bytes whichever fresh process builds it (make demo, a test runner, an IDE).

It is built in clean processes: libraries imported beside it add methods to standard-library classes
(transformers adds ``logging.Logger.info_once``), which a docstring corpus would pick up, so tests that
need the demo's exact bytes build it in a subprocess as ``make demo`` does.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO

SCRIPT = REPO / "scripts" / "build_demo_corpus.py"
# a test runner or an IDE replaces sys's hooks before the builder runs (pytest: sys.unraisablehook)
HOOKED = f"""
import runpy, sys
for hook in ("breakpointhook", "displayhook", "excepthook", "unraisablehook"):
    setattr(sys, hook, lambda *args, **kwargs: None)
sys.argv = ["build_demo_corpus.py", "--out", sys.argv[1]]
runpy.run_path({str(SCRIPT)!r}, run_name="__main__")
"""


@pytest.mark.slow
def test_demo_corpus_does_not_depend_on_the_hooks_of_the_process_that_builds_it(tmp_path):
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "a.jsonl.gz")], check=True)
    subprocess.run([sys.executable, "-c", HOOKED, str(tmp_path / "b.jsonl.gz")], check=True)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
