"""Engines: where a step's work runs. Where a step runs is not the step.

Every step (``embed``, ``cluster``, ``schedule``) is one function over a settings object that
owns its directories, its manifest, its accounting and its commit. An engine only decides
where the heavy, parallel part of that work runs, through one interface, :class:`Engine`:

========================= ========================================= ===========================================
method                    ``local`` (:mod:`.local`)                 ``ray`` (:mod:`.ray`)
========================= ========================================= ===========================================
``preflight``             nothing                                   Ray installed, ``--ray-address`` answers
``encoder``               the encoder, loaded here                  resolved on a worker (:mod:`.ray_embed`)
``embed_parts``           :mod:`.local_embed`: a reader thread and  a Ray Data pipeline (read tasks, encoder
                          the encoder in this process               actors), parts written by the driver
``verify_parts``          re-hash the embedding parts here          one task per group of parts
``assign``                the assignment kernel over every row      the kernel over row ranges in tasks
``build_token_store``     tokenize here (``--workers``)             ranges in tasks, merged by the store's owner
``shard_runner``          ``shards.write_here``                     every shard in its own task
========================= ========================================= ===========================================

The step calls ``engine(settings.engine).METHOD(...)`` and never asks which engine it has.
An engine receives what it works on as arguments (the directory owners ``EmbedDir``, the
``EmbedWriter``, the shard writers, the token-store path, the step's own kernels such as the
assignment function): it imports no step package, so steps and engines form no import cycle.

**Adding an engine**: one module defining an :class:`Engine` subclass and ending with
``ENGINE = MyEngine()``, plus one line in :data:`ENGINES` (or :func:`register` at run time).
See ``tests/test_architecture.py``, which registers a toy one.

An engine never changes the result: the directory a step writes is byte for byte the same
(embeddings within floating-point tolerance, as across batch sizes), so ``--engine`` and
``--ray-address`` are settings with ``record=False``: a run with the other engine is "already
done". The driver (the process that runs the step) keeps every trust check: it writes through
the same writers and journals, checks the accounting, and commits.

The local engine never imports Ray; the ``ray`` extra (``pip install 'clusterclip[ray]'``)
brings it. See docs/SCALE.md for running on a Ray cluster.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

from ..errors import InputError
from ..registry import Registry
from ..settings import setting

#: engine name -> the module that defines it (ending with ``ENGINE = YourEngine()``): one line per engine
ENGINES: Registry = Registry("engine", "ENGINE", {
    "local": "clusterclip.engines.local",
    "ray": "clusterclip.engines.ray",
})


class Engine:
    """Where the heavy part of each step runs (see the module docstring). Every method gets the
    step's owners, writers and kernels as arguments; the step keeps the checks and the commit."""

    name: ClassVar[str] = "?"
    #: settings (field, flag) that only this engine uses; refused with any other engine
    own_options: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: settings (field, flag) this engine cannot honour when given (other than their default)
    refused_options: ClassVar[tuple[tuple[str, str], ...]] = ()

    def check(self, settings) -> None:
        """Refuse (one line) settings this engine cannot run, before anything is read."""
        fields = getattr(settings, "__dataclass_fields__", {})
        for name, flag in self.refused_options:
            if name in fields and getattr(settings, name) != fields[name].default:
                raise InputError(f"{flag}: not with --engine {self.name} ({self.why_refused}); leave it out, or use "
                                 f"--engine local")

    why_refused: ClassVar[str] = ""

    def preflight(self, settings) -> None:
        """Before ``--out`` is touched: refuse (one line) an engine that cannot run here."""

    # ------------------------------------------------------------------ embed
    def encoder(self, settings, *, make: Callable, given=None, log: Callable[[str], None] | None = None):
        """The encoder the parts are embedded with (``make(settings)`` builds one; ``given``: the caller's)."""
        raise NotImplementedError

    def embed_parts(self, readers, settings, encoder, writer, partition, *, done_parts: int,
                    progress: bool) -> tuple[Any, int]:
        """Embed every document of ``partition`` after the first ``done_parts`` parts, writing each part
        through ``writer`` (an ``EmbedWriter``); return ``(ReadStats, documents embedded)``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ cluster
    def verify_parts(self, emb, settings) -> None:
        """Re-hash every embedding part of ``emb`` (an ``EmbedDir``) against its manifest."""
        raise NotImplementedError

    def assign(self, store, centroids, settings, *, kernel: Callable, block_rows: int, gpu: bool,
               progress: bool):
        """``(labels, similarity)`` of every row of ``store`` (an ``EmbeddingStore``) by ``kernel``
        (``cluster.assignment.assign``); rows may be split at multiples of ``block_rows`` only."""
        raise NotImplementedError

    # ------------------------------------------------------------------ schedule
    def build_token_store(self, emb, doc_ids, n_docs: int, tok, path, settings, *, progress: bool):
        """The token store at ``path`` of the documents ``doc_ids`` (ascending) of ``emb``."""
        raise NotImplementedError

    def shard_runner(self, settings) -> Callable:
        """``run_shards`` for :func:`clusterclip.shards.write_shards` (it journals what this yields)."""
        raise NotImplementedError


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
