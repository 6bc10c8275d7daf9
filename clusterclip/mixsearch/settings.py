"""Settings of ``clusterclip fit`` and ``clusterclip propose`` (see their ``--help``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InputError
from ..settings import Settings, setting
from .fit import MODELS

#: what ``--target`` may name: one of these, or ``cluster:K``
TARGETS = ("balanced", "overall", "target")
_CLUSTER_TARGET = re.compile(r"cluster:([0-9]+)")


@dataclass(frozen=True)
class FitSettings(Settings):
    step = "fit"

    model: str = setting("auto", flag="--model", kind=str, choices=("auto", *MODELS), group="model",
                         help="loglinear (the data-mixing law c + exp(t·x)), lightgbm (RegMix's regressor), or auto: "
                              "every model the runs support, the one with the better leave-one-out fit kept "
                              "(Spearman, then R²).")
    target: str = setting("balanced", flag="--target", kind=str, group="model",
                          help="The loss to predict: balanced (the cluster-balanced held-out loss), overall "
                               "(token-weighted), target (the --target texts of holdout) or cluster:K.")
    seed: int = setting(0, flag="--seed", kind=int, min=0, max=2**31 - 1, group="model",
                        help="Seed of LightGBM (deterministic either way).")

    def validate(self) -> None:
        if self.target not in TARGETS and not _CLUSTER_TARGET.fullmatch(self.target):
            raise InputError(f"--target {self.target}: unknown; use balanced, overall, target or cluster:K")

    def target_cluster(self) -> int | None:
        m = _CLUSTER_TARGET.fullmatch(self.target)
        return int(m.group(1)) if m else None


@dataclass(frozen=True)
class ProposeSettings(Settings):
    step = "propose"

    max_kl: float = setting(0.5, flag="--max-kl", kind=float, min=0, group="sampling",
                            help="Stay within this KL divergence (nats) of the natural mixture (the corpus's own token "
                                 "shares), so the proposal stays near the mixtures the fit has seen; 0 proposes the "
                                 "natural mixture, a large value (100) lifts the limit.")
    budget_tokens: int | None = setting(None, flag="--budget-tokens", kind=int, min=1, optional=True,
                                        group="sampling",
                                        help="The budget of the schedule the weights are for: each cluster's share "
                                             "stays within what its documents x --max-repeats can supply of it "
                                             "[default: the proxies' training tokens].")
    max_repeats: int | None = setting(None, flag="--max-repeats", kind=int, min=1, max=1 << 20, optional=True,
                                      group="sampling",
                                      help="The clip of that schedule [default: the largest of the proxies' "
                                           "schedules].")
    seed: int = setting(0, flag="--seed", kind=int, min=0, max=2**31 - 1, group="sampling",
                        help="Seed of the random search (LightGBM fits).")
    candidates: int = setting(4096, flag="--candidates", kind=int, min=16, max=10_000_000, group="sampling",
                              help="Random feasible mixtures tried by the search (LightGBM fits; RegMix's method: "
                                   "the mean of the best 64 is proposed).")
