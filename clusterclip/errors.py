"""Errors a user can act on.

Every problem caused by the user's input or settings is raised as a
:class:`ClusterClipError` whose message is one line naming the file, the row (or
option) and the fix. The CLI prints it without a traceback and exits non-zero.
"""

from __future__ import annotations


class ClusterClipError(Exception):
    """A problem with the user's input or settings; its message says what to do."""

    exit_code = 2


class InputError(ClusterClipError):
    """A corpus, artifact or option the step cannot use."""


class MismatchError(ClusterClipError):
    """An output directory or upstream artifact that does not match this run."""


def where(path, row: int | None = None) -> str:
    """Format ``path`` (and ``row``) as ``"path, row N"`` for error messages."""
    return f"{path}" if row is None else f"{path}, row {row}"
