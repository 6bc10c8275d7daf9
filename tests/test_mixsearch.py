"""Mixture search (issue 24 item 3): the fits and their leave-one-out figures, the constrained proposal (exact
for the log-linear law, RegMix's search otherwise), and a weights file the sampler realises."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterclip.errors import InputError, IntegrityError
from clusterclip.mixsearch import Constraints, constraints_for, fit_mixture, propose
from clusterclip.mixsearch.fit import LightGBM, LogLinear, r_squared, spearman
from clusterclip.mixsearch.propose import closest_feasible, kl_divergence, minimise_linear, random_feasible, search
from clusterclip.mixsearch.weights import read_provenance, sidecar_path, write_weights


def law_data(n_runs: int, k: int, seed: int = 0, noise: float = 0.0):
    rng = np.random.default_rng(seed)
    x = rng.dirichlet(np.ones(k), size=n_runs)
    t = rng.normal(0, 1, k)
    y = 2.0 + np.exp(x @ t) + noise * rng.normal(size=n_runs)
    return x, y, t


# --------------------------------------------------------------------------- fits
def test_the_log_linear_fit_recovers_a_mixing_law_and_is_chosen_for_it():
    x, y, _ = law_data(24, 4, noise=1e-4)
    fit = fit_mixture(x, y)
    assert fit.name == "loglinear"
    assert fit.loo["loglinear"]["spearman"] > 0.95 and fit.loo["loglinear"]["r2"] > 0.95
    assert fit.loo["loglinear"]["spearman"] >= fit.loo["lightgbm"]["spearman"]
    fresh = law_data(50, 4, seed=9)[0]
    np.testing.assert_allclose(fit.predict(x), y, atol=1e-3)
    assert np.all(np.isfinite(fit.predict(fresh)))


def test_lightgbm_is_deterministic_and_ranks_a_step_law():
    rng = np.random.default_rng(1)
    x = rng.dirichlet(np.ones(3), size=40)
    y = 3.0 - 0.5 * (x[:, 0] > 0.4) - 0.2 * (x[:, 1] > 0.3)
    a, b = LightGBM().fit(x, y), LightGBM().fit(x, y)
    assert np.array_equal(a.predict(x), b.predict(x))
    fit = fit_mixture(x, y, model="lightgbm")
    assert fit.loo["lightgbm"]["spearman"] > 0.7


def test_leave_one_out_figures_are_honest_for_noise():
    rng = np.random.default_rng(2)
    x = rng.dirichlet(np.ones(3), size=12)
    y = rng.normal(3.0, 0.1, 12)  # no relation at all
    fit = fit_mixture(x, y)
    assert all(d["r2"] < 0.5 for d in fit.loo.values())  # no model claims to predict noise


def test_rank_and_r2_helpers():
    assert spearman(np.array([1, 2, 3.0]), np.array([10, 20, 30.0])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3.0]), np.array([3, 2, 1.0])) == pytest.approx(-1.0)
    assert spearman(np.ones(3), np.arange(3.0)) != spearman(np.ones(3), np.arange(3.0))  # NaN: constant
    assert r_squared(np.array([1, 2, 3.0]), np.array([1, 2, 3.0])) == 1.0
    assert r_squared(np.array([1, 2, 3.0]), np.array([3, 2, 1.0])) < 0


def test_too_few_runs_are_one_line_errors():
    x, y, _ = law_data(6, 8)
    with pytest.raises(InputError, match=r"RUNS: 6 runs, but the loglinear fit over 8 clusters has 9 parameters"):
        fit_mixture(x, y, model="loglinear")
    assert fit_mixture(x, y).name == "lightgbm"  # auto: the model the runs support
    with pytest.raises(InputError, match="needs at least 5"):
        fit_mixture(x[:4], y[:4])
    with pytest.raises(InputError, match="no finite loss"):
        fit_mixture(x, np.where(np.arange(6) == 2, np.nan, y))


# --------------------------------------------------------------------------- constraints and the proposal
@st.composite
def problems(draw):
    k = draw(st.integers(2, 7))
    seed = draw(st.integers(0, 10_000))
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 50, k).astype(float)
    tokens[rng.integers(k)] += 1 + rng.integers(0, 50)  # at least one cluster with tokens
    repeats = rng.integers(1, 5, k)
    budget = int(max(1, rng.uniform(0.2, 1.0) * (tokens * repeats).sum()))
    max_kl = draw(st.one_of(st.none(), st.floats(0.0, 2.0)))
    return constraints_for(tokens, repeats, budget, max_kl), rng.normal(0, 2, k)


@settings(max_examples=50, deadline=None)
@given(problem=problems())
def test_the_exact_proposal_is_feasible_and_no_feasible_mixture_beats_it(problem):
    c, t = problem
    try:
        anchor = closest_feasible(c)
    except InputError as e:  # per-cluster clips can keep every mixture farther than max_kl
        assert "--max-kl" in str(e) and c.max_kl is not None
        return
    assert c.violations(anchor, tol=1e-7) == []
    w = minimise_linear(t, c)
    assert c.violations(w, tol=1e-7) == []
    assert np.all(w[c.natural == 0] == 0)
    others = random_feasible(c, 100, seed=1)
    assert all(c.violations(o, tol=1e-7) == [] for o in others)
    assert t @ w <= (others @ t).min() + 1e-5  # the others are feasible to 1e-12 in KL: ~1e-6 in shares
    assert t @ w <= t @ anchor + 1e-9


def test_the_exact_proposal_agrees_with_a_general_solver():
    from scipy.optimize import minimize

    rng = np.random.default_rng(3)
    for _ in range(10):
        c = constraints_for(rng.integers(1, 40, 5).astype(float), 3, 100, float(rng.uniform(0.05, 0.8)))
        t = rng.normal(0, 2, 5)

        def kl_room(w, c=c):
            return c.max_kl - np.sum(w * np.log(np.maximum(w, 1e-300) / c.natural))

        cons = [{"type": "eq", "fun": lambda w: w.sum() - 1}, {"type": "ineq", "fun": kl_room}]
        ref = minimize(lambda w, t=t: t @ w, c.natural, method="SLSQP", bounds=[(1e-12, u) for u in c.caps],
                       constraints=cons, options={"ftol": 1e-12, "maxiter": 500})
        assert t @ minimise_linear(t, c) <= ref.fun + 1e-6


def test_limits_of_the_kl_constraint():
    c = constraints_for([10, 20, 30], 2, 40, 0.0)
    np.testing.assert_allclose(minimise_linear(np.array([0.0, 1.0, 2.0]), c), c.natural, atol=1e-6)
    free = constraints_for([10, 20, 30], 2, 40, None)  # caps 0.5, 1, 1: the cheapest filled to its cap
    np.testing.assert_allclose(minimise_linear(np.array([0.0, 1.0, 2.0]), free), [0.5, 0.5, 0.0])
    with pytest.raises(InputError, match="at most 120 tokens"):
        constraints_for([10, 20, 30], 2, 121, None)


def test_the_search_proposal_is_feasible_and_predicted_no_worse_than_natural():
    c = constraints_for([5, 10, 40, 45], 2, 60, 0.3)
    rng = np.random.default_rng(4)
    x = rng.dirichlet(np.ones(4), size=30)
    y = 3.0 - x[:, 0] + 0.5 * x[:, 3]
    fit = fit_mixture(x, y, model="lightgbm")
    p = propose(fit, c, n=512)
    assert p.method == "search" and c.violations(p.weights, tol=1e-7) == []
    assert p.predicted <= p.natural_predicted + 1e-12
    assert kl_divergence(p.weights, c.natural) <= 0.3 + 1e-9
    w = search(lambda m: m[:, 0], c, n=256, top=8, seed=0)
    assert c.violations(w, tol=1e-7) == [] and w[0] < 0.01 < c.natural[0]


def test_propose_minimises_the_fitted_law():
    x, y, t = law_data(20, 3, seed=5)
    c = Constraints(np.array([0.5, 0.3, 0.2]), np.array([1.0, 1.0, 1.0]), 0.2)
    p = propose(fit_mixture(x, y, model="loglinear"), c)
    assert p.method == "exact" and p.predicted <= p.natural_predicted
    assert np.argmax(p.weights - c.natural) == np.argmin(LogLinear().fit(x, y).t)


# --------------------------------------------------------------------------- the weights file and the sampler
def test_the_weights_file_reads_back_through_schedule_and_its_sidecar_guards_it(tmp_path):
    from clusterclip.schedule.mixing import read_cluster_table

    w = np.array([0.125, 0.0, 1 / 3, 1 - 0.125 - 1 / 3])
    path, side = write_weights(tmp_path / "weights.csv", w, {"fit": {"model": "loglinear"}, "runs": ["a", "b"]})
    assert side == sidecar_path(path) and side.name == "weights.manifest.json"
    weights, repeats = read_cluster_table(path, 4)
    assert np.array_equal(weights, w) and not repeats.any()  # every cluster listed, exact floats
    assert read_provenance(path)["runs"] == ["a", "b"]
    path.write_text(path.read_text().replace("0.125", "0.25"))
    with pytest.raises(IntegrityError, match="changed since"):
        read_provenance(path)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 6))
def test_the_sampler_realises_a_proposal_as_token_shares(seed, k):
    """A proposal within the caps, given as --weights with --balance tokens and --budget-tokens, is the schedule's
    token split: each cluster gets its share of the budget, give or take one document."""
    from clusterclip.schedule.law import Budget, SamplingLaw
    from clusterclip.schedule.sampling import plan_schedule

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, 300)
    labels[:k] = np.arange(k)
    lengths = rng.integers(1, 30, 300)
    tokens = np.bincount(labels, weights=lengths, minlength=k)
    budget = int(0.6 * tokens.sum() * 2)
    c = constraints_for(tokens, 2, budget, 0.5)
    w = minimise_linear(rng.normal(0, 1, k), c)
    law = SamplingLaw(sampler="clusterclip", max_repeats=2, balance="tokens", cluster_weights=w)
    schedule = plan_schedule(labels, law, Budget(budget_tokens=budget), lengths=lengths, seed=seed)
    got = np.bincount(schedule.cluster, weights=lengths[schedule.doc_id], minlength=k)
    longest = np.array([lengths[labels == j].max() for j in range(k)])
    assert np.all(np.abs(got - w * budget) <= longest + 1)
