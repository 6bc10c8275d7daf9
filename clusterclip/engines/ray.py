"""The ``ray`` engine: a step's tasks as Ray tasks (see :class:`clusterclip.engines.Engine`).

:meth:`RayEngine.map` sends each task to the cluster (a few per CPU in flight, :mod:`.ray_session`),
the shared objects once through Ray's object store; :meth:`RayEngine.runner` gives the embed step its
Ray Data pipeline (:mod:`.ray_embed`). Nothing here is imported unless ``--engine ray`` is chosen.
Workers read inputs and write outputs by path: on a multi-node cluster the corpus, the input
directories and ``--out`` must be on a shared file system.
"""

from __future__ import annotations

from ..errors import InputError
from . import Engine

#: tasks per CPU of the cluster a step cuts its work into (for balance)
TASKS_PER_CPU = 4


class RayEngine(Engine):
    name = "ray"
    own_options = (("ray_address", "--ray-address"), ("ray_actors", "--ray-actors"))
    refused_options = (("num_partitions", "--num-partitions"), ("limit", "--limit"))
    why_refused = "Ray spreads the whole corpus over the cluster"

    def check(self, settings) -> None:
        super().check(settings)
        device = str(getattr(settings, "device", "")).lower()
        if device.startswith("cuda:"):
            raise InputError(f"--device {settings.device}: with --engine ray every task runs on the GPU Ray gives it; "
                             f"use --device cuda")

    def preflight(self, settings) -> None:
        from .ray_session import preflight

        preflight(settings.ray_address)

    def quiet(self) -> None:
        from .ray_session import native_output_off_the_terminal

        native_output_off_the_terminal()

    def slots(self, settings) -> int:
        from .ray_session import cluster_cpus, connect

        connect(settings.ray_address)
        return TASKS_PER_CPU * cluster_cpus()

    def map(self, settings, fn, args, *, shared=(), sizes=None, bar=None, resources=None):
        from .ray_session import TASK_NODES, connect, run_tasks

        ray = connect(settings.ray_address)
        refs = tuple(ray.put(x) for x in shared)  # top-level arguments: Ray hands each task the object
        remote = ray.remote(_run_task)
        calls = ((fn, *refs, *a) for a in args)
        for i, (node, result) in run_tasks(remote, calls, resources=resources or {"num_cpus": 1}):
            TASK_NODES[node] += 1
            if bar is not None and sizes is not None:
                bar.update(sizes[i])
            yield i, result

    def runner(self, kind: str):
        if kind == "embed":
            from .ray_embed import RAY_EMBED

            return RAY_EMBED
        return None


def _run_task(fn, *values):
    """A task on a worker: ``(the node it ran on, fn's result)``."""
    from .ray_session import node_id, task_environment

    task_environment()
    return node_id(), fn(*values, progress=None)


ENGINE = RayEngine()
