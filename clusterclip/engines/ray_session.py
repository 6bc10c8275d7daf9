"""The Ray side shared by the steps: joining (or starting) Ray, its resources, running tasks, errors.

- :func:`connect` joins the cluster at ``--ray-address`` (``auto``: the one ``ray start`` made on
  this machine; ``ray://host:10001``: Ray Client). Without an address Ray's own rule applies:
  ``$RAY_ADDRESS``, else the cluster of the last ``ray start`` here, else a new local Ray. A Ray already initialised in this process (a
  notebook, a test) is used as it is.
- :func:`run_tasks` runs one remote function over many argument tuples with a bounded number
  in flight, yielding ``(index, result)`` as they finish (the driver puts them in order).
- :func:`user_error` turns a task's failure back into the one-line error the user can act on:
  a :class:`~clusterclip.errors.ClusterClipError` raised inside a task reaches the driver
  wrapped in Ray's exception with a remote traceback; the user sees the line, not the wrapper.

Fault points (:mod:`clusterclip.faults`) name crashes of the *driver*: every task and actor
here runs with ``CLUSTERCLIP_FAULT`` removed (:func:`task_environment`), so a crash test kills
the driver at an exact point while Ray's own retries cover its workers.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any, Callable, Iterable, Iterator

from ..errors import ClusterClipError, InputError, first_line
from ..faults import ENV as FAULT_ENV

#: tasks in flight per CPU of the cluster (keeps every core busy without holding every result)
IN_FLIGHT_PER_CPU = 2

#: the Ray nodes this process's work ran on: node id -> tasks (embed: blocks read and blocks encoded there)
TASK_NODES: Counter[str] = Counter()


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the `data` extra
    except ImportError:
        raise InputError("--engine ray: Ray is not installed; pip install 'clusterclip[ray]' (ray[data]>=2.60), "
                         "or use --engine local") from None
    return ray


def preflight(address: str | None) -> None:
    """Before ``--out`` is touched: Ray is installed and ``--ray-address`` answers (one-line errors)."""
    require_ray()
    if address:
        _check_reachable(address)


def connect(address: str | None, log: Callable[[str], None] | None = None):
    """Join (or start) Ray once per process; returns the ``ray`` module."""
    ray = require_ray()
    quiet_ray_loggers()
    if ray.is_initialized():
        data_context()
        return ray
    say = log or (lambda message: None)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=True,
                                  logging_level=logging.CRITICAL)
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"--ray-address {address}" if address else "--engine ray"
        raise InputError(f"{where}: cannot start or join Ray ({first_line(e)}); start the cluster with "
                         f"`ray start --head`, or give its address (auto, HOST:6379 or ray://HOST:10001)") from None
    quiet_ray_loggers()  # ray.init configures them again
    res = ray.cluster_resources()
    say(f"ray: {'joined ' + address if address else 'started a local Ray'}: {int(res.get('CPU', 0))} CPUs, "
        f"{int(res.get('GPU', 0))} GPUs, {len(ray.nodes())} node(s)")
    data_context()
    return ray


def quiet_ray_loggers() -> None:
    """Ray's Python loggers print nothing: a failure reaches the user as one line (:func:`reraise`), and
    Ray's notes would drown the bars."""
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def native_output_off_the_terminal() -> bool:
    """For the CLI's own process: Ray's C++ core worker writes its log lines (errors included, and a note
    when ``RAY_BACKEND_LOG_LEVEL`` is set) straight to file descriptor 2. Point descriptor 2 at the null
    device and give Python's ``sys.stderr`` (the bars, the notes, the one ``error:`` line) a descriptor of
    the terminal. Ray keeps its own logs in its session directory (``/tmp/ray/session_latest/logs``).

    Does nothing (False) when ``sys.stderr`` is not this process's descriptor 2 (a test runner, a notebook).
    """
    import io
    import sys

    stream = sys.stderr
    try:
        if stream is None or stream.fileno() != 2:
            return False
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False
    stream.flush()
    terminal = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=stream.encoding, errors=stream.errors)
    return True


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Refuse a ``HOST:PORT`` nobody listens on at once (Ray itself retries for minutes)."""
    import socket

    if address in ("auto", "local") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise InputError(f"--ray-address {address}: not HOST:PORT; give e.g. auto, HEAD:6379 or ray://HEAD:10001")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise InputError(f"--ray-address {address}: nothing answers there ({e.strerror or e}); start the cluster "
                         f"with `ray start --head` on that machine, or check the address") from None


def data_context():
    """Ray Data settings for clusterclip: blocks come back in the order of the inputs, no bars of Ray's own."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = False
    return ctx


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def task_environment() -> None:
    """Run inside every task and actor: fault points are the driver's (see the module docstring), and
    the tokenizers' thread pool gets the CPUs Ray gave the task, not every core of the node."""
    os.environ.pop(FAULT_ENV, None)
    if "RAYON_NUM_THREADS" not in os.environ:
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        os.environ["RAYON_NUM_THREADS"] = str(max(1, int(cpus)))


def node_id() -> str:
    """The id of the Ray node this task or actor runs on (recorded by the driver in :data:`TASK_NODES`)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def user_error(error: BaseException) -> BaseException:
    """The :class:`ClusterClipError` a task raised, as a plain one-line error; else ``error`` itself."""
    seen = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, ClusterClipError) and not _is_ray_wrapper(e):
            return type(e)(_one_line(e))
        e = getattr(e, "cause", None) or e.__cause__
    return error


def _one_line(error: BaseException) -> str:
    """The message of a task's error without what Ray appended to it (retry notes on later lines)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(error).__name__


def reraise(error: BaseException):
    """Raise the user's one-line error inside ``error`` (see :func:`user_error`), else ``error`` itself."""
    found = user_error(error)
    if found is error:
        raise error
    raise found from None


def _is_ray_wrapper(e: BaseException) -> bool:
    return any(c.__module__.startswith("ray.") for c in type(e).__mro__ if c not in (BaseException, Exception, object))


def run_tasks(remote_fn, args: Iterable[tuple], *, resources: dict | None = None) -> Iterator[tuple[int, Any]]:
    """``(index, result)`` of ``remote_fn(*args[index])`` as tasks finish, at most a few per CPU in flight.

    A task's :class:`ClusterClipError` is raised here as the same one-line error.
    """
    import ray

    limit = max(2, IN_FLIGHT_PER_CPU * cluster_cpus())
    fn = remote_fn.options(**resources) if resources else remote_fn
    todo = iter(enumerate(args))
    pending: dict = {}
    try:
        while True:
            while len(pending) < limit:
                nxt = next(todo, None)
                if nxt is None:
                    break
                pending[fn.remote(*nxt[1])] = nxt[0]
            if not pending:
                return
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - translated to the user's one line
                    reraise(e)
                yield index, result
    finally:
        for ref in pending:
            ray.cancel(ref, force=False)
