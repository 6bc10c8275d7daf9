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

__all__ = ["HeldoutSelection", "HoldoutSettings", "ProxySettings", "select_heldout"]
