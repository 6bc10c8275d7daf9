"""Settings objects: one frozen, validated dataclass per step.

A step's settings are built once (by the CLI from flags and config files, or by a library
user directly), validated in ``__post_init__`` with the same types and ranges as the flags,
and then travel as one object; nothing touches an output directory before one exists. Their
:meth:`Settings.record` is the manifest's ``settings``.

Each field is declared with :func:`setting`, which names the flag used in error messages and
the rule the value must follow::

    @dataclass(frozen=True)
    class ClusterSettings(Settings):
        k: int = setting(flag="--k", kind=int, min=1, group="clustering", help="Number of clusters.")
        alpha: float = setting(0.0, flag="--alpha", kind=float, min=-16, max=16, group="sampling", help="...")

The CLI generates each command's click options, its ``--config`` keys and its ``--help``
sections from these declarations (:mod:`clusterclip.cli.options`): there is no second list of
flags to disagree with this one.

Values are never coerced: ``k = 4.7`` or ``k = true`` in a config file is refused, not
rounded or read as 1.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar, NoReturn, Self

from .errors import InputError

_REQUIRED = object()

#: ``--rehash-inputs`` (embed, schedule, verify)
REHASH_HELP = ("Re-read every corpus file to check its sha256, even when its file status (size, times, inode) is "
               "unchanged since it was hashed.")


@dataclass(frozen=True)
class Rule:
    """How one setting is checked (type, range, choices) and shown (flag, help, group).

    The CLI generates its click option and reads its config-file key from the rule, so a
    flag, a config value and a library argument follow exactly the same rule.
    """

    flag: str
    kind: type
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    choices: tuple | None = None
    optional: bool = False  #: None is allowed
    multiple: bool = False  #: a tuple of ``kind`` values (a repeatable flag)
    # how the option is presented (not part of the check)
    aliases: tuple = dataclasses.field(default=(), compare=False)  #: other flags accepted (old names, short forms)
    help: str | Callable[[], str] = dataclasses.field(default="", compare=False)  #: text, or made when shown
    group: str = dataclasses.field(default="", compare=False)  #: the --help section
    metavar: str | None = dataclasses.field(default=None, compare=False)
    cli: bool = dataclasses.field(default=True, compare=False)  #: False: a library-only setting, no flag

    def check(self, value: Any, subject: str | None = None, fix: str = "") -> Any:
        """``value`` if it follows the rule (ints stay ints), else a one-line :class:`InputError`.

        The message starts ``--flag value:``; ``subject`` replaces that (a config file's
        ``FILE [table]: key = value``) and ``fix`` is appended (``"; fix the config file"``).
        """
        if value is None:
            if self.optional:
                return None
            self._refuse("required; give a value", subject, fix)
        if self.multiple:
            if not isinstance(value, (list, tuple)):
                self._refuse("must be a list", subject, fix, value)
            return tuple(self._one(v, subject, fix) for v in value)
        return self._one(value, subject, fix)

    def _refuse(self, what: str, subject: str | None, fix: str, *shown) -> NoReturn:
        head = subject if subject is not None else " ".join([self.flag, *map(repr, shown)])
        raise InputError(f"{head}: {what}{fix}")

    def _one(self, value: Any, subject: str | None, fix: str) -> Any:
        def refuse(what: str, *shown) -> NoReturn:
            self._refuse(what, subject, fix, *shown)

        if self.kind is bool:
            if not isinstance(value, bool):
                refuse("must be true or false", value)
            return value
        value = self._as_kind(value, refuse)
        self._check_bounds(value, refuse)
        return value

    def _as_kind(self, value: Any, refuse: Callable[..., NoReturn]) -> Any:
        """``value`` as this rule's kind (int, float, str or tuple of names), else refused."""
        if self.kind is int:
            as_int = _as_int(value)
            if as_int is None:
                refuse("must be a whole number", value)
            value = as_int
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) and not _is_numpy_number(value):
                refuse("must be a number", value)
            value = float(value)
            if not math.isfinite(value):
                refuse("must be a finite number", value)
        elif self.kind is str:
            if not isinstance(value, str):
                refuse("must be a text value", value)
            if not value:
                refuse("must not be empty")
            if "\x00" in value:
                refuse("must not contain a NUL character")
        elif self.kind is tuple:
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                value = tuple(value)
            else:
                refuse("must be a list of names", value)
        return value

    def _check_bounds(self, value: Any, refuse: Callable[..., NoReturn]) -> None:
        """``value`` is one of the choices and within ``min``/``max``, else refused."""
        if self.choices is not None:
            items = value if self.kind is tuple else (value,)
            bad = [v for v in items if v not in self.choices]
            if bad:
                refuse(f"unknown; choose one of {', '.join(map(str, self.choices))}", bad[0])
        if self.min is not None and (value < self.min or (self.min_open and value == self.min)):
            refuse(f"must be {'more than' if self.min_open else 'at least'} {_num(self.min)}{self._range_hint()}",
                   value)
        if self.max is not None and value > self.max:
            refuse(f"must be at most {_num(self.max)}{self._range_hint()}", value)

    def parse(self, text: str) -> Any:
        """A command-line string as this rule's kind, then checked: ``"8"`` -> 8.

        A ``multiple`` rule parses one of its values (one use of the repeatable flag).
        """
        check = (lambda v: self._one(v, None, "")) if self.multiple else self.check
        if self.kind is tuple:  # --format bin,parquet
            return check(tuple(v.strip() for v in str(text).split(",") if v.strip()))
        if self.kind is int or self.kind is float:
            try:
                number = int(text) if self.kind is int else float(text)
            except (TypeError, ValueError):
                what = "a whole number" if self.kind is int else "a number"
                raise InputError(f"{self.flag} {text!r}: must be {what}") from None
            return check(number)
        return check(text)

    def _range_hint(self) -> str:
        if self.min is not None and self.max is not None:
            return f" (between {_num(self.min)} and {_num(self.max)})"
        return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _is_numpy_number(value) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iuf"


def _as_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if _is_numpy_number(value) and value.dtype.kind in "iu":
        return int(value)
    return None


def setting(default: Any = _REQUIRED, *, flag: str, kind: type, min: float | None = None, max: float | None = None,
            min_open: bool = False, choices=None, optional: bool = False, multiple: bool = False, record: bool = True,
            aliases: tuple = (), help: str | Callable[[], str] = "", group: str = "", metavar: str | None = None, cli: bool = True):
    """A settings field with its validation rule; ``record=False`` keeps it out of the manifest.

    ``help`` and ``group`` (the ``--help`` section) describe its generated click option;
    ``aliases`` are other flags accepted for it (``--num-shards`` for ``--num-partitions``).
    """
    rule = Rule(flag, kind, min, max, min_open, tuple(choices) if choices is not None else None, optional, multiple,
                tuple(aliases), help, group, metavar, cli)
    metadata = {"rule": rule, "record": record}
    if default is _REQUIRED:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Base of every step's settings: validated on construction, immutable, recordable."""

    step: ClassVar[str] = "?"

    def __post_init__(self):
        for f in fields(self):
            rule = f.metadata.get("rule")
            if rule is not None:
                object.__setattr__(self, f.name, rule.check(getattr(self, f.name)))
        self.validate()

    def validate(self) -> None:
        """Checks across fields (override); raise :class:`InputError` naming the flags."""

    def record(self) -> dict:
        """The manifest's ``settings``: every recorded field, JSON-ready."""
        out = {}
        for f in fields(self):
            if f.metadata.get("record", True):
                value = getattr(self, f.name)
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **changes) -> Self:
        return dataclasses.replace(self, **changes)

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {f.name: f.metadata["rule"] for f in fields(cls) if "rule" in f.metadata}

    @classmethod
    def build(cls, values: dict | None = None, **kwargs) -> Self:
        """Construct from a mapping and/or keyword arguments, refusing unknown names in one line."""
        merged = {**(values or {}), **kwargs}
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise InputError(f"unknown setting(s) for `{cls.step}`: {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        return cls(**merged)


def differences(old: dict, new: dict, limit: int = 3) -> list[str]:
    """``key: old -> new`` for the keys of two settings records that differ (for refusals)."""
    out = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            out.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    if len(out) > limit:
        out = out[:limit] + [f"and {len(out) - limit} more"]
    return out
