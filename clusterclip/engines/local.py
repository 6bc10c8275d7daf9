"""The ``local`` engine: every task in this process, one after another (see :class:`clusterclip.engines.Engine`).

A step's work is one task here (:meth:`LocalEngine.slots` is 1), which parallelises inside itself
where it can (faiss's threads, the tokenizer's ``--workers``). A task's ``progress`` advances the
step's bar as it goes.
"""

from __future__ import annotations

from . import Engine


def _ignore(n: int) -> None:
    """``progress`` of an in-process task the step draws no bar for."""


class LocalEngine(Engine):
    name = "local"

    def map(self, settings, fn, args, *, shared=(), sizes=None, bar=None, resources=None):
        progress = bar.update if bar is not None else _ignore
        for i, a in enumerate(args):
            yield i, fn(*shared, *a, progress=progress)


ENGINE = LocalEngine()
