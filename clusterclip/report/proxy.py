"""The report's proxy panels (issue 24 item 5): held-out loss per cluster for each schedule (mean and spread
over seeds), the loss curves, and the fit's predicted against measured loss.

Like :mod:`.figures`, every function returns ``(png_bytes, plotted)``; the data come from the owners
(:class:`~clusterclip.proxy.runfiles.RunsDir`, :class:`~clusterclip.mixsearch.fitdir.FitDir`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import MismatchError
from .figures import HEIGHT, _figure, _png
from .html import Figure, Section

#: colours of the schedules, in the order they appear (samplers keep their usual colours when named so)
PALETTE = ("#7f7f7f", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def per_schedule(runs) -> dict[str, list[str]]:
    """schedule name -> its runs (the seeds), in the order of ``runs.parquet``."""
    table = runs.runs()
    out: dict[str, list[str]] = {}
    for name, sched in zip(table["run"], table["schedule"]):
        out.setdefault(Path(str(sched)).name, []).append(str(name))
    return out


def cluster_losses(runs, names: list[str], k: int) -> np.ndarray:
    """``[len(names), k]`` held-out loss per cluster of each run (NaN where a cluster is not scored)."""
    out = np.full((len(names), k), np.nan)
    for i, name in enumerate(names):
        scores = runs.heldout_loss(name)
        mine = (scores.groups >= 0) & (scores.groups < k)
        out[i, scores.groups[mine]] = scores.loss[mine]
    return out


def heldout_by_cluster(runs, sizes: np.ndarray) -> tuple[bytes, dict]:
    """Held-out loss of each cluster (largest cluster first), one line per schedule: the mean over its seeds, a
    band from min to max; and each schedule's loss relative to the first schedule's, per cluster."""
    groups = per_schedule(runs)
    k = len(sizes)
    order = np.lexsort((np.arange(k), -sizes))
    rank = np.arange(1, k + 1)
    fig, (ax, ax_rel) = _figure(HEIGHT * 1.6, rows=2, sharex=True)
    plotted: dict = {"cluster_order": order.tolist(), "schedules": {}}
    base = None
    for (name, names), color in zip(groups.items(), PALETTE):
        losses = cluster_losses(runs, names, k)[:, order]
        mean = np.nanmean(losses, axis=0) if len(names) else np.full(k, np.nan)
        ax.plot(rank, mean, color=color, linewidth=1.2, label=f"{name} ({len(names)} seed{'s' * (len(names) > 1)})")
        if len(names) > 1:
            ax.fill_between(rank, np.nanmin(losses, axis=0), np.nanmax(losses, axis=0), color=color, alpha=0.15)
        if base is None:
            base = mean
        ax_rel.plot(rank, mean - base, color=color, linewidth=1.2)
        plotted["schedules"][name] = {"runs": names, "mean": _listed(mean),
                                      "min": _listed(np.nanmin(losses, axis=0)), "max": _listed(np.nanmax(losses, axis=0))}
    ax.set_ylabel("held-out loss (nats/token)")
    ax.set_title("Held-out loss per cluster, largest cluster first (band: min to max over seeds)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    first = next(iter(groups), "")
    ax_rel.axhline(0, color="black", linewidth=0.6)
    ax_rel.set_ylabel(f"minus {first}")
    ax_rel.set_xlabel("cluster rank by size")
    ax_rel.set_title(f"Difference to {first} (below 0: lower loss)")
    ax_rel.grid(True, alpha=0.3)
    return _png(fig), plotted


def loss_curves(runs) -> tuple[bytes, dict]:
    """Training loss over tokens of every run, one colour per schedule."""
    fig, (ax,) = _figure()
    plotted: dict = {}
    for (name, names), color in zip(per_schedule(runs).items(), PALETTE):
        for j, run in enumerate(names):
            curve = runs.loss_curve(run)
            ax.plot(curve["tokens"], _smooth(curve["loss"]), color=color, linewidth=1, alpha=0.8,
                    label=name if j == 0 else None)
            plotted[run] = {"tokens": curve["tokens"].tolist(), "loss": curve["loss"].tolist()}
    ax.set_xlabel("tokens trained")
    ax.set_ylabel("training loss (moving mean of 5 steps)")
    ax.set_title("Loss curves of the proxies")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _png(fig), plotted


def predicted_vs_measured(fit) -> tuple[bytes, dict]:
    """Each schedule's measured loss (mean over seeds, error bar: the spread) against the leave-one-out
    prediction of every fitted model; the diagonal is a perfect prediction."""
    points = fit.points()
    rec = fit.fit_record()
    fig, (ax,) = _figure()
    measured, spread = points["measured"], points["spread"]
    plotted: dict = {"schedules": [str(s) for s in points["schedule"]], "measured": measured.tolist(),
                     "spread": spread.tolist(), "predicted": {}}
    lo, hi = float(np.min(measured)), float(np.max(measured))
    for model, color in zip(("loglinear", "lightgbm"), ("#d62728", "#1f77b4")):
        col = f"predicted_{model}"
        if col not in points:
            continue
        pred = points[col]
        loo = rec["leave_one_out"][model]
        chosen = " (chosen)" if model == rec["model"] else ""
        ax.errorbar(pred, measured, yerr=spread, fmt="o", color=color, markersize=4, capsize=2,
                    label=f"{model}{chosen}: Spearman {_fmt(loo['spearman'])}, R² {_fmt(loo['r2'])}")
        lo, hi = min(lo, float(np.min(pred))), max(hi, float(np.max(pred)))
        plotted["predicted"][model] = pred.tolist()
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"predicted {rec['target']} loss (leave-one-out)")
    ax.set_ylabel(f"measured {rec['target']} loss")
    ax.set_title("The mixture fit: each schedule predicted by the fit to the others")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return _png(fig), plotted


def _smooth(values: np.ndarray, width: int = 5) -> np.ndarray:
    if len(values) < width:
        return values
    kernel = np.ones(width) / width
    head = np.cumsum(values[: width - 1]) / np.arange(1, width)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def _listed(a: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in a]


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


class ProxyInputs:
    """``report --runs RUNS [--fit FIT]``: the directories (their owners) and the section they make."""

    def __init__(self, runs, fit):
        self.runs, self.fit = runs, fit

    @classmethod
    def open(cls, runs_dir, fit_dir) -> ProxyInputs | None:
        if runs_dir is None and fit_dir is None:
            return None
        from ..mixsearch.fitdir import FitDir
        from ..proxy.runfiles import RunsDir

        return cls(RunsDir(runs_dir) if runs_dir is not None else None, FitDir(fit_dir) if fit_dir is not None else None)

    def upstream(self) -> dict:
        found = {}
        if self.runs is not None:
            found["runs"] = self.runs
        if self.fit is not None:
            found["fit"] = self.fit
        return found

    def check(self, cl) -> None:
        """One line when RUNS was not trained on schedules of these clusters, or FIT not fitted on RUNS."""
        if self.runs is not None:
            theirs = self.runs.info.upstream("cluster").get("manifest_sha256")
            if theirs != cl.record()["manifest_sha256"]:
                raise MismatchError(f"--runs {self.runs.path}: its proxies were trained on schedules of another "
                                    f"clustering than {cl.path}; give the CL they were made from")
        if self.runs is not None and self.fit is not None:
            theirs = self.fit.info.upstream("runs").get("manifest_sha256")
            if theirs != self.runs.record()["manifest_sha256"]:
                raise MismatchError(f"--fit {self.fit.path}: fitted on other runs than {self.runs.path}; give the "
                                    f"RUNS it was fitted on (or leave one out)")

    def section(self, sizes: np.ndarray, plotted: dict) -> Section:
        figs, text = [], []
        if self.runs is not None:
            png, plotted["heldout_loss"] = heldout_by_cluster(self.runs, sizes)
            figs.append(Figure("heldout_loss", png, "held-out loss per cluster and schedule",
                               "Held-out loss of each cluster under each schedule's proxies (mean over seeds, band: "
                               "min to max), and the difference to the first schedule."))
            png, plotted["loss_curves"] = loss_curves(self.runs)
            figs.append(Figure("loss_curves", png, "loss curves", "Training loss of every proxy run."))
            st = self.runs.stats
            text.append(f"{len(st.runs)} proxy runs from {self.runs.path}, {st.train_tokens:,} tokens each "
                        f"({st.runs[0]['parameters']['total'] / 1e6:.1f} M parameters); each held-out document "
                        f"scored on its own in windows of the model's context. A difference between schedules "
                        f"smaller than the spread over seeds is no difference.")
        if self.fit is not None:
            png, plotted["fit"] = predicted_vs_measured(self.fit)
            figs.append(Figure("fit", png, "predicted against measured loss",
                               "Each schedule's measured loss against the fit's leave-one-out prediction."))
            text.append(f"The mixture fit of {self.fit.path}: every schedule predicted by the fit to the others "
                        f"(leave-one-out); the diagonal is a perfect prediction.")
        return Section("proxies", "What the orders do to a model", text, figs)
