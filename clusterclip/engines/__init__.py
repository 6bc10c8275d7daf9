"""Engines: where a step's work runs. Where a step runs is not the step.

Every step (``embed``, ``cluster``, ``schedule``) is one function over a settings object that
owns its directories, its manifest, its accounting and its commit. An engine only decides
where the heavy, parallel part of that work runs:

========== ===================================================== ==========================================
engine     embed                                                 cluster / schedule
========== ===================================================== ==========================================
``local``  :func:`clusterclip.embed.pipeline.run_local`: a        in this process (``assign``;
           reader thread and the encoder in this process          ``build_token_store`` + ``write_shards``)
``ray``    :mod:`.ray_embed`: a Ray Data pipeline (read tasks,    :mod:`.ray_cluster`: the assignment pass as
           encoder actors), parts written by the driver           Ray tasks; :mod:`.ray_schedule`: tokenize
                                                                  and write each shard in Ray tasks
========== ===================================================== ==========================================

An engine never changes the result: the directory a step writes is byte for byte the same
(embeddings within floating-point tolerance, as across batch sizes), so ``--engine`` and
``--ray-address`` are settings with ``record=False``: a run with the other engine is "already
done". The driver (the process that runs the step) keeps every trust check: it writes through
the same writers and journals, checks the accounting, and commits.

The local engine never imports Ray; the ``ray`` extra (``pip install 'clusterclip[ray]'``)
brings it. See docs/SCALE.md for running on a Ray cluster.
"""

from __future__ import annotations

from ..errors import InputError
from ..settings import setting

#: ``--engine`` choices
ENGINES = ("local", "ray")


def engine_setting(what: str):
    """The ``--engine`` field of a step's settings (not recorded: it does not change the result)."""
    return setting("local", flag="--engine", kind=str, choices=ENGINES, record=False, group="engine",
                   help=f"Where {what} runs: local (this machine) or ray (a Ray cluster, see docs/SCALE.md). "
                        f"The output is the same; a finished run with the other engine is already done.")


def ray_address_setting():
    """The ``--ray-address`` field (not recorded): a Ray cluster to join; default: start a local Ray."""
    return setting(None, flag="--ray-address", kind=str, optional=True, record=False, group="engine", metavar="ADDR",
                   help="With --engine ray: the cluster to join (auto, HOST:6379 or ray://HOST:10001) [default: "
                        "$RAY_ADDRESS, else the cluster `ray start` made on this machine, else a new local Ray].")


def check_engine(settings) -> None:
    """Refuse Ray-only options without ``--engine ray`` (one line)."""
    if settings.engine != "ray":
        for flag, name in (("--ray-address", "ray_address"), ("--ray-actors", "ray_actors")):
            if getattr(settings, name, None) is not None:
                raise InputError(f"{flag}: only used with --engine ray; add --engine ray or leave it out")
