"""Fault injection for the crash tests: ``CLUSTERCLIP_FAULT=NAME[:N[:ACTION]]``.

A step calls :func:`checkpoint` at the points where a crash matters (after a part, after training,
after a shard, in the middle of the commit...). When the environment names that point, the
process kills itself there with SIGKILL (``kill``, the default) or freezes with SIGSTOP
(``stop``, to hold its lock while a test starts a second run) the ``N``-th time it passes
(default 1). Unset, a checkpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "CLUSTERCLIP_FAULT"
_passes: dict[str, int] = {}


def checkpoint(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, rest = spec.partition(":")
    if target != name:
        return
    count, _, action = rest.partition(":")
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] != int(count or 1):
        return
    os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)
