"""Progress bars: on stderr, with a total, a rate and an ETA, refreshed at least every few seconds.

Hidden with ``--quiet``, ``CLUSTERCLIP_NO_PROGRESS=1`` or tqdm's own ``TQDM_DISABLE``.
"""

from __future__ import annotations

import os
import sys

_TRUE = ("1", "true", "yes", "on")


def progress_enabled(requested: bool = True) -> bool:
    """Whether to draw bars: ``requested`` (False with --quiet) and no environment variable says no."""
    if not requested:
        return False
    if os.environ.get("CLUSTERCLIP_NO_PROGRESS", "").lower() in _TRUE:
        return False
    if os.environ.get("TQDM_DISABLE", "").lower() in _TRUE:
        return False
    return True


def bar(total=None, *, desc: str, unit: str = "it", enabled: bool = True, unit_scale: bool = False,
        initial: float = 0, leave: bool = True):
    """A tqdm bar on stderr (a disabled one when progress is off)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial, leave=leave,
                disable=not progress_enabled(enabled), file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5, maxinterval=5.0, smoothing=0.05)
