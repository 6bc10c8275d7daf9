"""Proxy models (SPEC §7): what an order does to a small model, measured on a held-out set.

- :mod:`.heldout` — the held-out documents, per cluster and seeded; target texts; their tokens;
- :mod:`.model` — a small causal LM of `transformers`' own classes from a tiny config;
- :mod:`.stream` — a schedule's shards read sequentially, as their trainer reads them;
- :mod:`.train` — the deterministic, resumable training loop;
- :mod:`.score` — held-out loss per cluster, each document on its own in context-length windows;
- :mod:`.run` — one run end to end; :mod:`.runfiles` — the files of a run (their one owner).

The mixture fit and the proposal that close the loop are in :mod:`clusterclip.mixsearch`.
"""

from .heldout import HeldoutSelection, select_heldout
from .settings import HoldoutSettings, ProxySettings

__all__ = ["HeldoutSelection", "HoldoutSettings", "ProxySettings", "holdout_corpus", "select_heldout",
           "train_proxies"]


def holdout_corpus(emb_dir, cl_dir, out_dir, settings: HoldoutSettings | None = None, *, overwrite: bool = False,
                   progress: bool = True, log=None, **kwargs):
    """``clusterclip holdout``: the held-out documents of every cluster into ``out_dir`` (a ``StepResult``)."""
    from ..steps import run_step, settings_from
    from .holdout_step import HoldoutStep

    s = settings_from(settings, kwargs, HoldoutSettings)
    return run_step(HoldoutStep.open(emb_dir, cl_dir, s, progress=progress, log=log), out_dir, overwrite=overwrite)


def train_proxies(sched_dirs, eval_dir, out_dir, settings: ProxySettings | None = None, *, overwrite: bool = False,
                  progress: bool = True, log=None, **kwargs):
    """``clusterclip proxy``: one proxy per schedule and seed, scored on ``eval_dir`` (a ``StepResult``)."""
    from ..steps import run_step, settings_from
    from .proxy_step import ProxyStep

    s = settings_from(settings, kwargs, ProxySettings).replace(eval_dir=str(eval_dir))
    return run_step(ProxyStep.open(list(sched_dirs), s, progress=progress, log=log), out_dir, overwrite=overwrite)
