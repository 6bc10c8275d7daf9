"""Engines: where a step's tasks run. Where a step runs is not the step.

A step (:mod:`clusterclip.steps`) owns its directories, its manifest, its accounting and its commit;
it cuts its heavy work into **tasks** (input parts, row ranges, shard ranges) and hands them to its
engine. An engine knows nothing of any step: it runs task functions it is given, through one
interface, :class:`Engine`:

================= ======================================= ===========================================
method            ``local`` (:mod:`.local`)               ``ray`` (:mod:`.ray`)
================= ======================================= ===========================================
``check``         nothing                                 refuses what Ray cannot honour (``--limit``,
                                                          ``--num-partitions``, ``--device cuda:N``)
``preflight``     nothing                                 Ray installed, ``--ray-address`` answers
``slots``         1: one task of everything               4 per CPU of the cluster
``map``           each task in this process, in order,    Ray tasks (a few per CPU in flight), results
                  advancing the step's bar as it goes     as they finish, the bar advanced per task
``runner``        none (the step's own pipeline runs)     ``"embed"``: a Ray Data pipeline
``quiet``         nothing                                 Ray's native output off the terminal (CLI)
================= ======================================= ===========================================

**The task protocol.** ``engine.map(settings, fn, args, shared=(...), sizes=..., bar=...)`` calls
``fn(*shared, *args[i], progress=...)`` for every ``i`` and yields ``(i, result)`` as tasks finish (in
any order). ``fn`` is a module-level function (picklable by reference) that gets everything by
argument (owners and ``EmbeddingStore.rows`` slices pickle) and returns its result or the records
of the files it wrote. ``progress`` is a callable ``progress(n)`` advancing ``bar`` when the task
runs in this process, else None (then the engine advances ``bar`` by ``sizes[i]`` when task ``i``
ends). ``shared`` objects are sent once (Ray's object store) and passed first. A task's
:class:`~clusterclip.errors.ClusterClipError` reaches the user as the same one line on every engine.

Work that a map cannot express (the embed pipeline: a reader streaming documents into workers that
hold a model) is an engine-provided **runner** (``engine.runner("embed")``; None: the step runs its
own in-process pipeline). A new step should not need one.

**Adding an engine**: one module defining an :class:`Engine` subclass and ending with
``ENGINE = MyEngine()``, plus one line in :data:`ENGINES` (or :func:`register` at run time). See
``tests/test_architecture.py``, which registers a toy one.

An engine never changes the result: the directory a step writes is byte for byte the same
(embeddings within floating-point tolerance, as across batch sizes), so ``--engine`` and
``--ray-address`` are settings with ``record=False``: a run with the other engine is "already
done". The driver (the process that runs the step) keeps every trust check: it writes through
the same writers and journals, checks the accounting, and commits.

The local engine never imports Ray; the ``ray`` extra (``pip install 'clusterclip[ray]'``)
brings it. See docs/SCALE.md for running on a Ray cluster.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence

from ..errors import InputError
from ..registry import Registry
from ..settings import setting

#: engine name -> the module that defines it (ending with ``ENGINE = YourEngine()``): one line per engine
ENGINES: Registry = Registry("engine", "ENGINE", {
    "local": "clusterclip.engines.local",
    "ray": "clusterclip.engines.ray",
})


class Engine:
    """Where a step's tasks run (see the module docstring). It gets task functions and their arguments;
    the step keeps the checks, the journals and the commit."""

    name: ClassVar[str] = "?"
    #: settings (field, flag) that only this engine uses; refused with any other engine
    own_options: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: settings (field, flag) this engine cannot honour when given (other than their default)
    refused_options: ClassVar[tuple[tuple[str, str], ...]] = ()
    why_refused: ClassVar[str] = ""

    def check(self, settings) -> None:
        """Refuse (one line) settings this engine cannot run, before anything is read."""
        fields = getattr(settings, "__dataclass_fields__", {})
        for name, flag in self.refused_options:
            if name in fields and getattr(settings, name) != fields[name].default:
                raise InputError(f"{flag}: not with --engine {self.name} ({self.why_refused}); leave it out, or use "
                                 f"--engine local")

    def preflight(self, settings) -> None:
        """Before ``--out`` is touched: refuse (one line) an engine that cannot run here."""

    def quiet(self) -> None:
        """Called by the CLI before a run (not with ``--debug``): keep the engine's own output off the terminal."""

    def slots(self, settings) -> int:
        """How many tasks this engine runs at once: a step cuts its work into about this many (1: one task)."""
        return 1

    def map(self, settings, fn: Callable[..., Any], args: Iterable[tuple], *, shared: tuple = (),
            sizes: Sequence[int] | None = None, bar=None, resources: dict | None = None) -> Iterator[tuple[int, Any]]:
        """``(i, fn(*shared, *args[i], progress=...))`` for every task ``i``, as tasks finish (see the module
        docstring). ``resources``: what one task needs where that matters (``{"num_gpus": 1}``)."""
        raise NotImplementedError

    def runner(self, kind: str) -> Any | None:
        """This engine's own runner for a streaming ``kind`` of work (``"embed"``), or None."""
        return None


def register(name: str, module: str) -> None:
    """Make ``--engine NAME`` run the ``ENGINE`` of ``module``."""
    ENGINES.register(name, module)


def engine(name: str) -> Engine:
    """The engine registered as ``name`` (its module imported now: the local engine never imports Ray)."""
    if name not in ENGINES:
        raise InputError(f"--engine {name!r}: unknown; choose one of {', '.join(ENGINES)}")
    found = ENGINES[name]
    if not isinstance(found, Engine):
        raise RuntimeError(f"internal error: {ENGINES.modules[name]}.ENGINE is not an Engine")
    return found


def engine_setting(what: str):
    """The ``--engine`` field of a step's settings (not recorded: it does not change the result)."""
    # no fixed choices: check_engine reads the registry, so an engine registered at run time is accepted
    return setting("local", flag="--engine", kind=str, record=False, group="engine",
                   metavar="[" + "|".join(ENGINES) + "]",
                   help=f"Where {what} runs: local (this machine) or ray (a Ray cluster, see docs/SCALE.md). "
                        f"The output is the same; a finished run with the other engine is already done.")


def ray_address_setting():
    """The ``--ray-address`` field (not recorded): a Ray cluster to join; default: start a local Ray."""
    return setting(None, flag="--ray-address", kind=str, optional=True, record=False, group="engine", metavar="ADDR",
                   help="With --engine ray: the cluster to join (auto, HOST:6379 or ray://HOST:10001) [default: "
                        "$RAY_ADDRESS, else the cluster `ray start` made on this machine, else a new local Ray].")


def check_engine(settings) -> None:
    """Refuse an unknown engine, and Ray-only options without ``--engine ray`` (one line)."""
    chosen = engine(settings.engine)
    for other in ENGINES:
        if other != settings.engine:
            for name, flag in engine(other).own_options:
                if name not in dict(chosen.own_options) and getattr(settings, name, None) is not None:
                    raise InputError(f"{flag}: only used with --engine {other}; add --engine {other} or leave it out")
    chosen.check(settings)


def in_order(results: Iterable[tuple[int, Any]], n: int) -> list:
    """The results of ``n`` tasks (``(i, result)`` in any order) by task index."""
    out: list = [None] * n
    for i, result in results:
        out[i] = result
    return out
