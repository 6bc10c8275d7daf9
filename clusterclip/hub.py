"""Hugging Face hub names without waiting for a network that is not there.

``transformers`` retries an unreachable hub for 30–50 s before failing. We decide at once: a
hub name loads from the local cache when the hub is offline (``HF_HUB_OFFLINE=1``, or its host
does not answer within a few seconds), and a name that is not cached then fails in one line.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

from .errors import InputError

_TRUE = ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=1)
def hub_offline(timeout: float = 3.0) -> bool:
    """True when hub downloads cannot work: ``HF_HUB_OFFLINE`` set, or the hub's host does not answer."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in _TRUE:
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return False
    except OSError:
        return True


def cached_snapshot(name: str) -> str | None:
    """The local cache directory of hub repository ``name``, or None when it is not cached."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure means: not cached
        return None


def resolve_hub_name(name: str, option: str) -> str:
    """What to load for hub name ``name``: the name itself online, its cached snapshot offline."""
    if not hub_offline():
        return name
    snapshot = cached_snapshot(name)
    if snapshot is None:
        raise InputError(f"{option} {name}: not a local path, and the Hugging Face hub is unreachable here "
                         f"(offline or HF_HUB_OFFLINE set) and it is not in the local cache; download it where there "
                         f"is network and give its local directory")
    return snapshot
