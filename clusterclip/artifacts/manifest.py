"""``manifest.json``: what a step made, from what, with which settings, and the digest of every file.

A manifest is written last, so a directory with one is complete. It carries a ``checksum`` of
its own content (sha256 of the canonical JSON without that key): a hand-edited manifest is
refused instead of being believed. Its ``outputs`` list every file of the directory with size
and sha256; every consumer checks them (sizes always, digests of what it reads in full).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard, TypeVar

from .. import __version__
from ..errors import InputError, IntegrityError
from .files import dumps_json, sha256_bytes, sha256_file

MANIFEST = "manifest.json"
TOOL = "clusterclip"
MANIFEST_VERSION = 2
#: the layouts :class:`Manifest` reads (older ones are refused in one line by :func:`check_manifest`)
READABLE_VERSIONS = (MANIFEST_VERSION,)


def known_steps() -> set[str]:
    """The ``step`` names a clusterclip manifest may carry: those of the steps in :data:`clusterclip.steps.STEPS`."""
    from ..steps import STEPS

    return set(STEPS)


#: the top-level keys every manifest has (``Manifest``'s own fields); any other key is a step's ``extra``
_FIELDS = ("tool", "manifest_version", "version", "step", "settings", "inputs", "outputs", "statistics",
           "accounting", "checksum")


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` as data: built by the step driver (:func:`build_manifest`), read by the owners
    (:attr:`ArtifactDir.info <clusterclip.artifacts.directory.ArtifactDir>`) instead of ``.get()`` chains.

    ``extra`` holds the top-level keys a step adds (``corpus_stat``, ``incremental``, ...).
    :meth:`from_json` reads every manifest :func:`check_manifest` accepts (versions in
    :data:`READABLE_VERSIONS`; a key a later version adds is optional here); :meth:`to_json` writes
    the current layout, key for key as :func:`build_manifest` always has.
    """

    step: str
    settings: dict
    inputs: dict
    outputs: list[dict]
    statistics: dict
    accounting: dict | None = None
    extra: dict = field(default_factory=dict)
    version: str = __version__  #: the clusterclip that wrote it
    manifest_version: int = MANIFEST_VERSION

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        """The manifest of a parsed, checked ``manifest.json`` (:func:`check_manifest`)."""
        return cls(step=data["step"], settings=data["settings"], inputs=data["inputs"], outputs=data["outputs"],
                   statistics=data["statistics"], accounting=data.get("accounting"),
                   extra={k: v for k, v in data.items() if k not in _FIELDS},
                   version=str(data.get("version", "?")), manifest_version=int(data["manifest_version"]))

    def to_json(self) -> dict:
        """The JSON object, ``checksum`` last (over the rest)."""
        manifest: dict[str, Any] = {
            "tool": TOOL,
            "manifest_version": self.manifest_version,
            "version": self.version,
            "step": self.step,
            "settings": self.settings,
            "inputs": self.inputs,
            "outputs": sorted(self.outputs, key=lambda r: r["path"]),
            "statistics": self.statistics,
        }
        if self.accounting is not None:
            manifest["accounting"] = self.accounting
        manifest.update(self.extra)
        manifest["checksum"] = _checksum(manifest)
        return manifest

    def upstream(self, key: str) -> dict:
        """The record of input directory ``key`` (``{"path", "manifest_sha256"}``), ``{}`` when none was read."""
        record = self.inputs.get(key)
        return record if isinstance(record, dict) else {}

    def counted(self, key: str, default: int = 0) -> int:
        """``accounting[key]`` (``default`` when the step keeps no such tally)."""
        return int((self.accounting or {}).get(key, default))


T = TypeVar("T", bound="Stats")


@dataclass(frozen=True)
class Stats:
    """A step's ``statistics`` as data: the base of ``EmbedStats``, ``ClusterStats``, ``ScheduleStats`` (each
    beside its directory's owner, which reads it; its step writes it: :class:`~clusterclip.steps.Outcome`).

    Versions. A field without a default is a key every manifest this version reads has (the owner refuses one
    without it, in one line). A field with a default (None) may be absent: a key a later clusterclip added (the
    outputs of 0.2.0, ``tests/data/upgrade-0.2.0``, read with it None) or one written only in some
    configurations; :func:`written` marks those the step writes every time (null included). Reading keeps
    which keys were there (``present``) and, in ``other``, the keys no field names, so :meth:`to_json` gives
    back the very dict :meth:`from_json` read (the same manifest bytes); a step's own instance writes its
    required and :func:`written` fields, and the others when not None.
    """

    other: dict = field(default_factory=dict, kw_only=True)  #: the keys no field names, as they are
    #: the optional keys the JSON read held (None: made by a step, not read)
    present: frozenset | None = field(default=None, kw_only=True, compare=False, repr=False)

    @classmethod
    def from_json(cls: type[T], data: dict) -> T:
        """The statistics of a checked manifest; :class:`KeyError` naming a key every version has, when missing."""
        named = {f.name: f for f in _own_fields(cls)}
        missing = [n for n, f in named.items() if _required(f) and n not in data]
        if missing:
            raise KeyError(missing[0])
        return cls(**{n: data[n] for n in named if n in data},
                   other={k: v for k, v in data.items() if k not in named},
                   present=frozenset(n for n, f in named.items() if not _required(f) and n in data))

    def to_json(self) -> dict:
        """The JSON object (key order aside, which the canonical JSON sorts)."""
        data = dict(self.other)
        for f in _own_fields(type(self)):
            value = getattr(self, f.name)
            if value is not None or _required(f) or self._writes_null(f):
                data[f.name] = value
        return data

    def what(self, settings: dict) -> str:
        """What :func:`describe` says of the directory in messages (``48 documents, dim 384``); empty by default."""
        return ""

    def _writes_null(self, f: dataclasses.Field) -> bool:
        """Read: the key was there; made by a step: a :func:`written` field."""
        return f.name in self.present if self.present is not None else bool(f.metadata.get("written"))


def written() -> Any:
    """An optional statistics field the step writes every time, null included (older outputs may lack it)."""
    return field(default=None, metadata={"written": True})


def _own_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.name not in ("other", "present")]


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def read_stats(cls: type[T], manifest: dict, mp: Path) -> T:
    """``cls.from_json`` of a checked manifest's ``statistics``, or one line naming the key it lacks."""
    try:
        return cls.from_json(manifest["statistics"])
    except KeyError as e:
        raise IntegrityError(f"{mp}: its statistics lack {e.args[0]!r}; the directory is damaged or was not written "
                             f"by clusterclip: rerun `clusterclip {manifest.get('step')}`") from None


def build_manifest(step: str, settings: dict, inputs: dict, outputs: list[dict], statistics: dict,
                   accounting: dict | None = None, extra: dict | None = None) -> dict:
    """A complete manifest with its ``checksum``. ``outputs``: ``file_record``s of every file."""
    return Manifest(step, settings, inputs, outputs, statistics, accounting, dict(extra or {})).to_json()


def _checksum(manifest: dict) -> str:
    return sha256_bytes(dumps_json({k: v for k, v in manifest.items() if k != "checksum"}).encode("utf-8"))


def manifest_bytes(manifest: dict) -> bytes:
    return dumps_json(manifest).encode("utf-8")


def load_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_ours(manifest: dict | None) -> TypeGuard[dict]:
    """Whether a parsed ``manifest.json`` was written by clusterclip (any step)."""
    return manifest is not None and bool(manifest) and manifest.get("tool") == TOOL and manifest.get("step") in known_steps()


def read_manifest(directory: str | os.PathLike, step: str | None) -> dict:
    """The manifest of a finished ``step`` directory (any step when None), checked; else one line saying why."""
    from .output import PRIVATE_DIR

    d = Path(directory)
    what = f"`clusterclip {step}`" if step else "clusterclip"
    if not d.exists():
        raise InputError(f"{d}: no such directory; run {what} first to create it")
    if not d.is_dir():
        raise InputError(f"{d}: is a file, not a {what} output directory")
    mp = d / MANIFEST
    if not mp.exists():
        if (d / PRIVATE_DIR).is_dir():
            hint = "its run did not finish: rerun the same command to finish it"
        else:
            hint = f"it is not a {what} output directory"
        raise InputError(f"{mp}: missing; {hint}")
    try:
        manifest = json.loads(mp.read_text("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{mp}: not valid JSON ({type(e).__name__}); the directory is damaged: "
                             f"rerun the step that made it") from None
    check_manifest(manifest, mp, step)
    return manifest


#: the keys every manifest has, and their JSON types (what the owners read without further checks)
REQUIRED = {"settings": dict, "inputs": dict, "outputs": list, "statistics": dict, "checksum": str}


def check_manifest(manifest: object, mp: Path, step: str | None = None) -> dict:
    """``manifest`` (parsed from ``mp``) when it is a complete clusterclip manifest of ``step`` (any step when
    None) in this layout, whose ``checksum`` matches its content; else raise one line saying why."""
    what = f"`clusterclip {step}`" if step else "clusterclip"
    if not isinstance(manifest, dict) or manifest.get("tool") != TOOL:
        raise InputError(f"{mp}: not a clusterclip manifest; give a {what} output directory")
    made_by = manifest.get("step")
    if made_by not in known_steps():
        raise IntegrityError(f"{mp}: names no clusterclip step (step {made_by!r}); it is damaged or was not written "
                             f"by clusterclip: rerun the step that made the directory")
    if step is not None and made_by != step:
        raise InputError(f"{mp.parent}: is {describe(manifest)}, not a `clusterclip {step}` directory; give a {step} "
                         f"output directory here")
    if manifest.get("manifest_version") not in READABLE_VERSIONS:
        version = manifest.get("version")
        by = f"clusterclip {version}" if isinstance(version, str) else "a clusterclip of unknown version"
        raise InputError(f"{mp}: written by {by} in another layout (manifest_version "
                         f"{manifest.get('manifest_version')!r}, this version reads {MANIFEST_VERSION}); "
                         f"rerun `clusterclip {made_by}` with this version")
    missing = [k for k, t in REQUIRED.items() if not isinstance(manifest.get(k), t)]
    if missing:
        raise IntegrityError(f"{mp}: {', '.join(missing)} missing or of the wrong type; the directory is damaged: "
                             f"rerun `clusterclip {made_by}`")
    if manifest["checksum"] != _checksum(manifest):
        raise IntegrityError(f"{mp}: its checksum does not match its content (edited by hand or damaged); "
                             f"rerun `clusterclip {made_by}` to rebuild the directory")
    for rec in manifest["outputs"]:
        if not (isinstance(rec, dict) and isinstance(rec.get("path"), str) and isinstance(rec.get("bytes"), int)
                and isinstance(rec.get("sha256"), str)):
            raise IntegrityError(f"{mp}: an outputs entry is not a file record ({str(rec)[:60]}); "
                                 f"rerun `clusterclip {made_by}`")
    return manifest


def describe(manifest: dict) -> str:
    """``a `clusterclip embed` directory (48 documents, dim 384)`` and the like, for messages: the ``what`` of the
    statistics class of the step that wrote it (``Step.stats_class``); ``?`` when they cannot be read."""
    step = str(manifest.get("step"))
    return f"a `clusterclip {step}` directory ({_what(step, manifest)})"


def _what(step: str, manifest: dict) -> str:
    from ..steps import STEPS

    try:
        cls = STEPS[step].stats_class
        return "" if cls is None else cls.from_json(manifest["statistics"]).what(manifest.get("settings") or {})
    except (KeyError, TypeError, AttributeError, ValueError):  # no such step, statistics not as written
        return "?"


def manifest_digest(directory: str | os.PathLike) -> str:
    """The sha256 of a directory's manifest, taken over its canonical JSON: the same content gives the same
    digest however the file is laid out (a trailing newline lost in an editor is no change); a file that is
    not JSON is hashed as it is."""
    path = Path(directory) / MANIFEST
    manifest = load_json(path)
    if manifest is None:
        return sha256_file(path)
    return content_digest(manifest)


def content_digest(manifest: dict) -> str:
    """:func:`manifest_digest` of a parsed manifest (= the sha256 of the file clusterclip writes)."""
    return sha256_bytes(manifest_bytes(manifest))


def changed_upstream(recorded: dict, path: str | os.PathLike, what: str) -> str:
    """``was clustered from X, not from Y`` for a recorded upstream directory whose digest differs, or
    ``was clustered from an earlier state of X`` when it is the same path, rebuilt or edited since."""
    rec_path = recorded.get("path")
    if rec_path and os.path.abspath(rec_path) == os.path.abspath(path):
        return f"was {what} from {rec_path} as it was before (it was rebuilt or changed since: its manifest differs)"
    return f"was {what} from {rec_path or 'another run'}, not from {path} (its manifest differs)"


def unchanged_upstream(recorded: dict) -> Path | None:
    """The directory an upstream record names (``{"path", "manifest_sha256"}``), if it still holds that very
    manifest, or the generation of it that a later run kept readable there (``embed --incremental``); else None
    (moved, rebuilt or gone)."""
    from .output import generation_dir

    path, digest = recorded.get("path"), recorded.get("manifest_sha256")
    if not path or not isinstance(digest, str):
        return None
    for candidate in (Path(path), generation_dir(path, digest)):
        try:
            if (candidate / MANIFEST).is_file() and manifest_digest(candidate) == digest:
                return candidate
        except OSError:
            continue
    return None


def upstream_record(directory: str | os.PathLike, step: str) -> dict:
    """How a downstream manifest names an upstream directory: step, path and manifest digest."""
    return {"step": step, "path": str(Path(directory).resolve()), "manifest_sha256": manifest_digest(directory)}


def check_outputs(directory: str | os.PathLike, records: list[dict], *, full: bool,
                  only: set[str] | None = None) -> list[str]:
    """One line per file of ``records`` that is missing, of another size or (``full``) another sha256."""
    d = Path(directory)
    problems = []
    for rec in records:
        if only is not None and rec["path"] not in only:
            continue
        p = d / rec["path"]
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            problems.append(f"{p}: missing (recorded in {d / MANIFEST})")
            continue
        if size != rec["bytes"]:
            problems.append(f"{p}: {size} bytes, but {rec['bytes']} were recorded (truncated or replaced)")
        elif full and sha256_file(p) != rec["sha256"]:
            problems.append(f"{p}: its sha256 differs from the one recorded (damaged or replaced)")
    return problems


def verify_task(manifest: dict, directory: str, names: list[str], *, progress=None) -> int:
    """An engine task: the sha256 of the files ``names`` of ``directory`` checked against ``manifest``
    (:class:`IntegrityError` naming the first bad one); returns how many were checked."""
    require_outputs(directory, manifest, full=True, only=set(names))
    return len(names)


def require_outputs(directory: str | os.PathLike, manifest: dict, *, full: bool,
                    only: set[str] | None = None) -> None:
    """Raise :class:`IntegrityError` naming the first bad file (see :func:`check_outputs`)."""
    problems = check_outputs(directory, manifest.get("outputs") or [], full=full, only=only)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise IntegrityError(f"{problems[0]}{more}; run `clusterclip verify {directory}`, then rerun "
                             f"`clusterclip {manifest.get('step')}` to rebuild it")
