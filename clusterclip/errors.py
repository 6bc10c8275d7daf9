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


class IntegrityError(ClusterClipError):
    """An artifact whose bytes differ from what its producer recorded (damaged or edited)."""

    exit_code = 3


class BusyError(ClusterClipError):
    """Another run holds the output directory."""

    exit_code = 75  # EX_TEMPFAIL: try again later


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (its type name when it has none), shortened."""
    for line in str(error).strip().splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(error).__name__
