"""``scripts/proxy_figures.py`` renders what it measured: the README's ablation and mixture-search blocks say where
the targets ran (a fresh clone, at which commit, after its ``make demo``), their wall and CPU time, and only the
marked blocks of README.md change."""

from __future__ import annotations

from helpers import REPO, load_script

figures_script = load_script("proxy_figures")


def _cells(balanced: float, spread: float) -> dict:
    keys = ("balanced", "rare_half", "common_half", "overall")
    return {f"{k}_mean": balanced for k in keys} | {f"{k}_spread": spread for k in keys} | {"seeds": 3}


def _times(seconds: float, cpu: float) -> dict:
    return {"seconds": seconds, "load_before": 1.0, "load_after": 2.0, "cpu_seconds": cpu, "cores": 2}


def _figures() -> dict:
    setup = {"commit": "0123456789ab", "venv": _times(60.0, 50.0), "demo": _times(120.0, 200.0)}
    when = {"machine": "CPU, 2 cores", "date": "2026-12-07", "flags": " --fresh-clone", "fresh_clone": setup}
    run = {"parameters": {"total": 5_507_328}, "tokens_per_second": 900.0, "runtime": {"threads": 1}}
    nat, prop = _cells(6.70, 0.02), _cells(6.60, 0.02)
    return {
        "times": {"ablation": _times(900.0, 1500.0), "search": _times(600.0, 1100.0)},
        "when": {"ablation": when, "search": dict(when)},
        "ablation": {"schedules": {"random": _cells(6.40, 0.02), "clusterclip": _cells(6.34, 0.01)},
                     "runs": [run] * 6, "train_tokens": 131_072, "clusters": 64},
        "search_runs": 16, "search_tokens": 65_536,
        "fit": {"model": "lightgbm", "target": "balanced",
                "leave_one_out": {"lightgbm": {"spearman": 0.7, "r2": 0.5}, "loglinear": {"spearman": None, "r2": None}}},
        "proposal": {"kl_to_natural": 0.5, "predicted_loss": 6.6, "natural_predicted_loss": 6.7,
                     "constraints": {"max_kl": 0.5}},
        "check": {"schedules": {"natural": nat, "proposed": prop}},
    }


def test_blocks_say_where_and_how_long_the_targets_ran():
    blocks = figures_script.blocks_of(_figures())
    assert set(blocks) == {"ablation", "search"}
    for name, minutes, cpu in (("ablation", "15.0", "25.0 CPU-minutes: 12.5 min on 2 free cores"),
                               ("search", "10.0", "18.3 CPU-minutes: 9.2 min on 2 free cores")):
        text = blocks[name]
        assert f"took {minutes} min (load 1.0 -> 2.0, {cpu}) in a fresh clone of 0123456789ab" in text
        assert "after creating its `.venv` (60 s) and its `make demo` (120 s)" in text and "--fresh-clone" in text
    assert "`clusterclip` cluster-balanced -0.060 (lower by more than the spread 0.020)" in blocks["ablation"]
    assert "the proposal trains a better proxy" in blocks["search"]


def test_figures_of_an_earlier_run_render_without_the_new_fields():
    figures = _figures()
    for target in ("ablation", "search"):
        figures["when"][target].pop("fresh_clone")
        for key in ("cpu_seconds", "cores"):
            figures["times"][target].pop(key)
    blocks = figures_script.blocks_of(figures)
    assert "fresh clone of" not in blocks["ablation"] and "CPU-minutes" not in blocks["search"]


def test_only_the_marked_blocks_of_the_readme_change():
    readme = (REPO / "README.md").read_text("utf-8")
    blocks = {"ablation": "ABLATION BODY", "search": "SEARCH BODY"}
    new = figures_script.replace_blocks(readme, blocks)
    assert "<!-- proxy-figures:ablation -->\nABLATION BODY\n<!-- /proxy-figures -->" in new
    assert "<!-- proxy-figures:search -->\nSEARCH BODY\n<!-- /proxy-figures -->" in new
    outside = figures_script.replace_blocks(readme, {k: "" for k in blocks})
    assert figures_script.replace_blocks(new, {k: "" for k in blocks}) == outside
    assert figures_script.replace_blocks(new, blocks) == new
