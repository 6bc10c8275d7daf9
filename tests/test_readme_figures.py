"""The README's demo figures come from a run, not from prose: ``scripts/demo_figures.py`` writes them
between markers, and a fresh run of the demo must give the same documents and keywords."""

from __future__ import annotations

import shutil

import pytest

from helpers import REPO, load_script

figures = load_script("demo_figures")
README = (REPO / "README.md").read_text("utf-8")


@pytest.mark.parametrize("name", ["times", "keywords"])
def test_the_figures_are_a_generated_block(name):
    block = figures.read_block(README, name)
    assert block.strip() and block != "X", f"README.md: run `python scripts/demo_figures.py --write-readme` ({name})"
    # the block is exactly what the script renders from some figures: nothing edited by hand
    if name == "keywords":
        assert block.startswith(f"the {figures.N_CLUSTERS} clusters with the highest mean similarity have the keywords")
    else:
        assert "measured by `python scripts/demo_figures.py" in block and "`make demo` took" in block


def test_replacing_a_block_keeps_the_rest():
    text = "a <!-- demo-figures:times -->old<!-- /demo-figures --> b <!-- demo-figures:keywords -->x<!-- /demo-figures -->"
    out = figures.replace_blocks(text, {"times": "new 1", "keywords": "new 2"})
    assert out == ("a <!-- demo-figures:times -->new 1<!-- /demo-figures --> b "
                   "<!-- demo-figures:keywords -->new 2<!-- /demo-figures -->")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_fresh_demo_gives_the_readmes_documents_and_keywords(tmp_path):
    """`make demo`, run from another folder as the script does; its times are not compared (no clock asserts)."""
    measured = figures.measure(fresh_clone=False, keep=tmp_path / "demo-run")
    rendered = figures.blocks(measured)
    assert rendered["keywords"] == figures.read_block(README, "keywords")
    assert f"embedding the {measured['n_docs']:,} documents" in figures.read_block(README, "times")
