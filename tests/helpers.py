"""Helpers shared by the tests: corpora, the CLI (in-process and as a real process), one-line errors,
directory snapshots. Fixtures live in conftest.py; everything else a test needs is here."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SMALL_N_DOCS = 48
MAX_LENGTH = 32


def load_script(name: str):
    """Import ``scripts/NAME.py`` (the demo corpus builder, the tokenizer trainer) as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stdlib_docs(n: int, min_chars: int = 80) -> list[dict]:
    """``n`` real documents: Python standard library docstrings, as the demo corpus."""
    return list(load_script("build_demo_corpus").iter_docstrings(max_docs=n, min_chars=min_chars))


def jsonl_bytes(records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_jsonl(path: Path, records, comp: str = "") -> Path:
    """JSON lines, plain or compressed (``comp``: "", "gz" or "zst")."""
    data = jsonl_bytes(records)
    if comp == "gz":
        data = gzip.compress(data, mtime=0)
    elif comp == "zst":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_parquet(path: Path, columns: dict, row_group_size: int = 4) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


# --------------------------------------------------------------------------- the CLI
def invoke(args) -> tuple[int, str]:
    """``clusterclip ARGS`` in-process: (exit code, stdout + stderr)."""
    from clusterclip.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def run_cli(args, expect_ok: bool = True):
    """``clusterclip ARGS`` in-process, asserting success; returns click's result."""
    from clusterclip.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if expect_ok:
        assert result.exit_code == 0, f"clusterclip {' '.join(map(str, args))} failed:\n{result.output}"
    return result


def clusterclip_command(*args) -> list[str]:
    """The command line of a real ``clusterclip`` process (for kills, locks and the Makefile)."""
    return [sys.executable, "-m", "clusterclip", *map(str, args)]


def run_process(*args, check: bool = True, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "CLUSTERCLIP_NO_PROGRESS": "1", **(env or {})}
    result = subprocess.run(clusterclip_command(*args), capture_output=True, text=True, env=full_env, timeout=timeout)
    if check:
        assert result.returncode == 0, f"clusterclip {' '.join(map(str, args))} failed:\n{result.stderr}"
    return result


def assert_one_line_error(code: int, output: str, *needles: str) -> str:
    """A failed command printed exactly one ``error:`` line (no traceback, no bare exception name)."""
    assert code != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1, output
    line = errors[0]
    assert "unexpected internal error" not in line, line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    return line


# --------------------------------------------------------------------------- directories
def same_but_cache_record(files: dict[str, bytes]) -> dict[str, bytes]:
    """``tree_bytes`` of an output with its manifest's ``token_cache`` record (and checksum) left out: what is the
    same whether a schedule's tokens came from the token cache or were built by the run."""
    out = dict(files)
    if "manifest.json" in out:
        manifest = json.loads(out["manifest.json"])
        manifest.pop("token_cache", None)
        manifest.pop("checksum", None)
        out["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return out


def tree_bytes(root: Path, *, private: bool = False) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes); clusterclip's private ``.clusterclip/`` left out."""
    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not private and rel.parts and rel.parts[0] == ".clusterclip":
            continue
        if p.is_file() and not p.is_symlink():
            out[rel.as_posix()] = p.read_bytes()
    return out
