"""Settings objects: one frozen, validated dataclass per step.

A step's settings are built once (by the CLI from flags and config files, or by a library
user directly), validated in ``__post_init__`` with the same types and ranges as the flags,
and then travel as one object; nothing touches an output directory before one exists. Their
:meth:`Settings.record` is the manifest's ``settings``.

Each field is declared with :func:`setting`, which names the flag used in error messages and
the rule the value must follow::

    @dataclass(frozen=True)
    class ClusterSettings(Settings):
        k: int = setting(flag="--k", kind=int, min=1)
        alpha: float = setting(0.0, flag="--alpha", kind=float, min=-16, max=16)

Values are never coerced: ``k = 4.7`` or ``k = true`` in a config file is refused, not
rounded or read as 1.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .errors import InputError

_REQUIRED = object()


@dataclass(frozen=True)
class Rule:
    """How one setting is checked: its flag (for messages), type, range and choices."""

    flag: str
    kind: type
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    choices: tuple | None = None
    optional: bool = False  #: None is allowed

    def check(self, value: Any) -> Any:
        """``value`` if it follows the rule (ints stay ints), else a one-line :class:`InputError`."""
        if value is None:
            if self.optional:
                return None
            raise InputError(f"{self.flag}: required; give a value")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise InputError(f"{self.flag} {value!r}: must be true or false")
            return value
        if self.kind is int:
            as_int = _as_int(value)
            if as_int is None:
                raise InputError(f"{self.flag} {value!r}: must be a whole number")
            value = as_int
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) and not _is_numpy_number(value):
                raise InputError(f"{self.flag} {value!r}: must be a number")
            value = float(value)
            if not math.isfinite(value):
                raise InputError(f"{self.flag} {value!r}: must be a finite number")
        elif self.kind is str:
            if not isinstance(value, str):
                raise InputError(f"{self.flag} {value!r}: must be a text value")
            if not value:
                raise InputError(f"{self.flag}: must not be empty")
            if "\x00" in value:
                raise InputError(f"{self.flag}: must not contain a NUL character")
        elif self.kind is tuple:
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                value = tuple(value)
            else:
                raise InputError(f"{self.flag} {value!r}: must be a list of names")
        if self.choices is not None:
            items = value if self.kind is tuple else (value,)
            bad = [v for v in items if v not in self.choices]
            if bad:
                raise InputError(f"{self.flag} {bad[0]!r}: unknown; choose one of {', '.join(map(str, self.choices))}")
        if self.min is not None and (value < self.min or (self.min_open and value == self.min)):
            sign = ">" if self.min_open else "≥"
            raise InputError(f"{self.flag} {value!r}: must be {sign} {_num(self.min)}{self._range_hint()}")
        if self.max is not None and value > self.max:
            raise InputError(f"{self.flag} {value!r}: must be ≤ {_num(self.max)}{self._range_hint()}")
        return value

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
            min_open: bool = False, choices=None, optional: bool = False, record: bool = True):
    """A settings field with its validation rule; ``record=False`` keeps it out of the manifest."""
    rule = Rule(flag, kind, min, max, min_open, tuple(choices) if choices is not None else None, optional)
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

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {f.name: f.metadata["rule"] for f in fields(cls) if "rule" in f.metadata}

    @classmethod
    def build(cls, values: dict | None = None, **kwargs):
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
