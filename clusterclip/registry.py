"""One registry style for everything pluggable: input readers, encoders, shard formats, engines, steps.

A registry maps a name to the module that defines the thing, and the name of the attribute that
module ends with (``READER``, ``ENCODER``, ``FORMAT``, ``ENGINE``, ``STEP``). Adding one is one module
plus one line in its registry (or :meth:`Registry.register` at run time). Modules are imported when an
entry is first used, so an optional dependency (Ray, sentence-transformers) is only imported when
it is chosen. A registry is a read-only mapping ``name -> object``, in registration order.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any


class Registry(Mapping):
    def __init__(self, what: str, attribute: str, modules: dict[str, str]):
        self.what, self.attribute = what, attribute
        self.modules = dict(modules)
        self._loaded: dict[str, Any] = {}

    def register(self, name: str, module: str) -> None:
        """``name`` is the ``attribute`` of ``module`` from now on."""
        self.modules[name] = module
        self._loaded.pop(name, None)

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            module = importlib.import_module(self.modules[name])  # KeyError for an unknown name
            found = getattr(module, self.attribute, None)
            if found is None:
                raise RuntimeError(f"internal error: {self.modules[name]} defines no {self.attribute} ({self.what})")
            self._loaded[name] = found
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in self.modules

    def __iter__(self) -> Iterator[str]:
        return iter(self.modules)

    def __len__(self) -> int:
        return len(self.modules)

    def __repr__(self) -> str:
        return f"Registry({self.what}: {', '.join(self.modules)})"
