"""The demo corpus is the same bytes whichever process builds it (make demo, pytest, a notebook)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO, load_script


@pytest.mark.slow
def test_demo_corpus_does_not_depend_on_the_process_that_builds_it(tmp_path, monkeypatch):
    script = REPO / "scripts" / "build_demo_corpus.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "a.jsonl.gz")], check=True)
    # a test runner or an IDE replaces sys's hooks; the corpus must not notice
    for hook in ("breakpointhook", "displayhook", "excepthook", "unraisablehook"):
        monkeypatch.setattr(sys, hook, lambda *args, **kwargs: None)
    load_script("build_demo_corpus").main(["--out", str(tmp_path / "b.jsonl.gz")])
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
