"""``clusterclip propose`` through the one step driver: its output is a file and its sidecar, not a directory, and
the file rules hold (done, refused, replaced, never through a link) on a real fit directory (written by the fit
directory's own writer from a real log-linear fit of synthetic mixtures: no proxy training needed)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from helpers import assert_one_line_error, invoke, run_cli


@pytest.fixture(scope="module")
def fit_dir(tmp_path_factory):
    from clusterclip.mixsearch import fit_mixture
    from clusterclip.mixsearch.fitdir import write_fit
    from clusterclip.settings import Settings
    from clusterclip.steps import Outcome, Step, run_step

    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(4), size=12)
    y = 3.0 - x @ np.array([0.5, 0.2, 0.1, 0.4]) + rng.normal(0, 1e-3, 12)
    fit = fit_mixture(x, y, model="loglinear")
    record = {"target": "heldout", "train_tokens": 6000, "max_repeats": 4, "pool_tokens": [4000, 3000, 2000, 1000],
              "pool_documents": [40, 30, 20, 10], "runs": [f"m{i}-s0" for i in range(12)]}

    class WriteFit(Step[Settings]):  # the fit step's files and manifest, from a fit made here
        name, artifact = "write-fit", "fit"

        def run(self, run):
            names = write_fit(run.build, fit, record, [f"m{i}" for i in range(12)], np.zeros(12), np.ones(12, int))
            return Outcome(names, {"model": fit.name})

    out = tmp_path_factory.mktemp("fit") / "fit"
    run_step(WriteFit(Settings()), out)
    return out


def test_propose_writes_weights_and_sidecar_and_reruns_are_done(fit_dir, tmp_path):
    from clusterclip.mixsearch import propose_weights
    from clusterclip.mixsearch.propose_file import ProposeStep
    from clusterclip.mixsearch.settings import ProposeSettings
    from clusterclip.mixsearch.weights import read_provenance, sidecar_path
    from clusterclip.steps import preview

    out = tmp_path / "weights.csv"
    first = run_cli(["propose", fit_dir, "--out", out, "--max-kl", 0.2])
    assert first.output.startswith("propose: loglinear fit (exact): predicted heldout loss")
    assert f"-> {out}\nuse it: clusterclip schedule EMB CL --out SCHED --weights weights.csv" in first.output
    side = read_provenance(out)  # the sidecar names the file's sha256
    assert side["step"] == "propose" and side["settings"]["max_kl"] == 0.2 and side["clusters"] == 4
    assert side["inputs"]["fit"]["manifest_sha256"] and side["constraints"]["budget_tokens"] == 6000
    weights = np.loadtxt(out, delimiter=",", skiprows=1)[:, 1]
    assert abs(weights.sum() - 1) < 1e-9 and side["proposal"]["kl_to_natural"] <= 0.2 + 1e-9
    before = out.read_bytes(), sidecar_path(out).read_bytes()
    assert "already done" in run_cli(["propose", fit_dir, "--out", out, "--max-kl", 0.2]).output
    assert preview(ProposeStep.open(fit_dir, ProposeSettings(max_kl=0.2)), out).state == "done"
    assert (out.read_bytes(), sidecar_path(out).read_bytes()) == before
    code, text = invoke(["propose", fit_dir, "--out", out, "--max-kl", 0.1])
    assert_one_line_error(code, text, "another job", "max_kl", "--overwrite")
    replaced = propose_weights(fit_dir, out, max_kl=0.1, overwrite=True)
    assert replaced.state == "fresh" and read_provenance(out)["settings"]["max_kl"] == 0.1


def test_propose_refuses_what_it_did_not_write(fit_dir, tmp_path):
    from clusterclip.mixsearch.weights import sidecar_path

    out = tmp_path / "weights.csv"
    out.write_text("cluster,weight\n0,1\n")  # not ours (no sidecar)
    code, text = invoke(["propose", fit_dir, "--out", out, "--overwrite"])
    assert_one_line_error(code, text, "not written by `clusterclip propose`")
    assert out.read_text() == "cluster,weight\n0,1\n"
    out.unlink()
    run_cli(["propose", fit_dir, "--out", out])
    out.write_text(out.read_text().replace("0,", "0,0"))  # edited since
    code, text = invoke(["propose", fit_dir, "--out", out])
    assert_one_line_error(code, text, "edited since")
    out.unlink()  # a sidecar alone
    code, text = invoke(["propose", fit_dir, "--out", out])
    assert_one_line_error(code, text, "without its weights file")
    sidecar_path(out).unlink()
    os.symlink(tmp_path / "elsewhere.csv", out)  # never through a link
    code, text = invoke(["propose", fit_dir, "--out", out])
    assert_one_line_error(code, text, "not a plain file")
    assert not (tmp_path / "elsewhere.csv").exists()
    code, text = invoke(["propose", fit_dir, "--out", tmp_path / "nowhere" / "w.csv"])
    assert_one_line_error(code, text, "does not exist")
    code, text = invoke(["propose", fit_dir, "--out", tmp_path / "w.csv", "--budget-tokens", 10**9])
    assert_one_line_error(code, text, "--budget-tokens", "lower the budget")
    assert not (tmp_path / "w.csv").exists() and not sidecar_path(tmp_path / "w.csv").exists()
