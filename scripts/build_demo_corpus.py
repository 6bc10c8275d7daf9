#!/usr/bin/env python
"""Build the demo corpus: real text that exists offline on every machine.

One document per documented module, class and function of the Python standard
library (its docstrings), written as JSONL (``{"id": "json.dumps", "text": "..."}``),
optionally gzip- or zstd-compressed by the output's extension. The corpus is
naturally unbalanced (a few big packages, many small ones), which is what
ClusterClip is for.

    python scripts/build_demo_corpus.py --out demo/corpus.jsonl.gz --max-docs 3000
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import importlib.util
import inspect
import io
import json
import os
import pkgutil
import sys
import warnings
from pathlib import Path

# Modules that open windows, print, start things or are slow or noisy on import.
SKIP = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "__main__", "lib2to3",
    "pydoc_data", "ensurepip", "venv", "test", "xxsubtype", "_xxsubinterpreters", "msilib",
    "winreg", "winsound", "_winapi", "msvcrt", "nt", "_msi", "_overlapped", "asyncio.__main__",
}


def iter_docstrings(max_docs: int, min_chars: int):
    seen: set[int] = set()
    seen_texts: set[str] = set()
    count = 0
    for name in _module_names():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - platform-specific modules are simply absent
            continue
        for qualname, obj in _members(name, module):
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            doc = inspect.getdoc(obj)
            if not doc or len(doc) < min_chars or doc in seen_texts:
                continue
            seen_texts.add(doc)
            yield {"id": qualname, "text": doc}
            count += 1
            if count >= max_docs:
                return


def _module_names():
    """Top-level stdlib modules and the submodules of stdlib packages, sorted."""
    names = set()
    for top in sys.stdlib_module_names:
        if top in SKIP or top.startswith("_"):
            continue
        names.add(top)
        spec = importlib.util.find_spec(top)
        if spec is not None and spec.submodule_search_locations:
            for info in pkgutil.walk_packages(spec.submodule_search_locations, prefix=f"{top}."):
                parts = info.name.split(".")
                if not any(p.startswith("_") or p in SKIP or p.startswith("test") for p in parts):
                    names.add(info.name)
    return sorted(names)


# sys's hooks as Python starts them: a test runner or an IDE replaces some (pytest replaces
# sys.unraisablehook), which would change the corpus with the process that builds it.
_SYS_HOOKS = ("breakpointhook", "displayhook", "excepthook", "unraisablehook")


def _module_vars(name, module):
    members = dict(vars(module))
    if name == "sys":
        for hook in _SYS_HOOKS:
            original = getattr(sys, f"__{hook}__", None)
            if original is not None:
                members[hook] = original
    return members


def _members(name, module):
    yield name, module
    for attr, obj in sorted(_module_vars(name, module).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != name:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            yield f"{name}.{attr}", obj
            if inspect.isclass(obj):
                for m_attr, m_obj in sorted(vars(obj).items()):
                    if not m_attr.startswith("_") and (inspect.isfunction(m_obj) or inspect.ismethoddescriptor(m_obj)):
                        yield f"{name}.{attr}.{m_attr}", m_obj


def open_output(path: Path):
    if path.suffix == ".gz":
        return gzip.GzipFile(filename="", mode="wb", fileobj=open(path, "wb"), mtime=0)  # byte-stable
    if path.suffix == ".zst":
        import zstandard

        return zstandard.ZstdCompressor().stream_writer(open(path, "wb"), closefd=True)
    return open(path, "wb")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output file (.jsonl, .jsonl.gz or .jsonl.zst)")
    ap.add_argument("--max-docs", type=int, default=3000)
    ap.add_argument("--min-chars", type=int, default=80, help="skip docstrings shorter than this")
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp{args.out.suffix}")
    n = 0
    stdout = sys.stdout
    sys.stdout = io.StringIO()  # a few modules print on import
    try:
        with open_output(tmp) as f:
            for doc in iter_docstrings(args.max_docs, args.min_chars):
                f.write((json.dumps(doc, ensure_ascii=False) + "\n").encode("utf-8"))
                n += 1
    finally:
        sys.stdout = stdout
    os.replace(tmp, args.out)
    print(f"wrote {n} documents to {args.out}")


if __name__ == "__main__":
    main()
