"""The one writer of a step's ``--out``: lock it, build beside the old output, replace it at the end.

Layout of an output directory::

    OUT/manifest.json, OUT/...      the finished output (complete when manifest.json is there)
    OUT/.clusterclip/lock           advisory lock: one run per --out (released on exit or crash)
    OUT/.clusterclip/build/         the run being built, files at their final relative paths,
                                    plus job.json (the step, settings and inputs it is building)
    OUT/.clusterclip/commit.json    only while a finished build replaces the old output
    OUT/.clusterclip/committed.json the digest of the manifest the last commit put in place
    OUT/.clusterclip/generations/ID an earlier output a commit kept readable (``keep_previous``: the outputs made
                                    from it still name it): its manifest and hard links of its files

Rules this module enforces for every step:

- **nothing good is destroyed:** a run writes into ``build/``; the previous output stays
  complete and readable until the new one is finished. Then the commit replaces it: the old
  manifest goes first (the directory is "incomplete" for a moment), files are renamed into
  place, files of the old output that the new one does not have are deleted, and the new
  manifest comes last. A crash during the commit is rolled forward by the next run.
- **only what we wrote:** the commit deletes only the files listed in the previous manifest,
  never a directory it did not make, never an input, never through a symbolic link.
- **ours, proven, not claimed:** a non-empty ``--out`` is clusterclip's only when its
  ``manifest.json`` verifies (a clusterclip manifest of this layout whose checksum matches) *and*
  ``.clusterclip/committed.json`` holds that manifest's digest (written by the commit that put it
  there): a copied, edited or foreign manifest is refused, with or without ``overwrite``. Without a
  manifest, only an interrupted commit (``commit.json`` naming the new manifest's digest) or a
  directory holding nothing but ``.clusterclip/`` is ours. ``.clusterclip/`` and what it holds
  (``build/``, ``lock``, ``commit.json``, ``committed.json``) must be real directories and files, and
  a resumed build must hold no link. An output of an earlier clusterclip (no ``committed.json`` at
  all) is taken only with ``overwrite`` or by :meth:`OutputDir.adopt` (``verify --adopt``), and only
  once every file its manifest lists has its recorded size and sha256. All of this, and every path
  the commit will write or delete
  (no link on the way, no directory or foreign file where a file goes), is checked before the old
  manifest is touched.
- **one run at a time:** ``fcntl.flock`` on ``.clusterclip/lock``; a second run gets one line.
- **a refused or failed run can be corrected and rerun:** a build of other settings is
  discarded by the next run; a build of the same job is resumed.

A finished output of the same job is "done" (after checking that every recorded file is there
with its size); one of another job is refused unless ``overwrite``, naming what differs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import BusyError, ClusterClipError, InputError, IntegrityError, MismatchError
from ..faults import checkpoint
from ..remote import refuse_remote
from ..settings import differences
from .files import check_inside, dumps_json, file_record, fsync_dir, write_bytes_atomic, write_json_atomic
from .manifest import (
    MANIFEST,
    build_manifest,
    check_manifest,
    check_outputs,
    content_digest,
    is_ours,
    load_json,
    manifest_bytes,
)

PRIVATE_DIR = ".clusterclip"
LOCK_FILE = "lock"
BUILD_DIR = "build"
JOB_FILE = "job.json"
COMMIT_FILE = "commit.json"
OWNER_FILE = "committed.json"
GENERATIONS_DIR = "generations"


def generation_dir(out: str | os.PathLike, manifest_sha256: str) -> Path:
    """Where a commit with ``keep_previous`` keeps the output of this manifest digest readable."""
    return Path(out) / PRIVATE_DIR / GENERATIONS_DIR / manifest_sha256[:16]


@dataclass(frozen=True)
class Job:
    """What a run is: its step, settings record and inputs record (nothing time-dependent)."""

    step: str
    settings: dict
    inputs: dict

    def record(self) -> dict:
        return {"step": self.step, "settings": self.settings, "inputs": self.inputs}

    def key(self) -> str:
        return dumps_json(self.record())

    def same_as(self, record: dict | None) -> bool:
        return record is not None and bool(record) and dumps_json({k: record.get(k) for k in ("step", "settings", "inputs")}) == self.key()


class OutputDir:
    """A run's hold on ``--out`` (a context manager): see the module docstring.

    After entering, :attr:`state` is ``"done"`` (the same job is finished there: :attr:`manifest`
    holds its manifest), ``"resume"`` (an interrupted build of the same job is in :attr:`build`)
    or ``"fresh"`` (an empty :attr:`build`). Write outputs under :attr:`build` and finish with
    :meth:`commit`.
    """

    def __init__(self, out: str | os.PathLike, job: Job, *, overwrite: bool = False,
                 inputs: tuple = (), log: Callable[[str], None] | None = None, resumable: bool = True):
        refuse_remote(out, "output")
        self.out = Path(os.path.abspath(out))
        self.job = job
        self.overwrite = overwrite
        self.inputs = tuple(Path(p) for p in inputs)
        self.log = log or (lambda message: None)
        self.private = self.out / PRIVATE_DIR
        self.build = self.private / BUILD_DIR
        self.state: str | None = None
        self.manifest: dict | None = None
        self.previous: dict | None = None
        self._lock_fd: int | None = None
        self._adopted: str | None = None  #: the digest of a manifest without committed.json checked for --overwrite
        self.resumable = resumable  #: False: a failed run removes its build (a step that always starts again)

    # ------------------------------------------------------------------ entering
    def __enter__(self) -> "OutputDir":
        self._check_target()  # before anything is created in --out
        self._lock()
        try:
            self._check_target()  # again, now that no other run can change it
            self._roll_forward()
            self._decide()
        except BaseException:
            self._unlock()
            raise
        return self

    def peek(self) -> str:
        """What entering would decide, read-only and without the lock: ``"done"``, ``"resume"`` or ``"fresh"``
        (an interrupted commit counts as ``"resume"``), or the same one-line refusal."""
        self._check_target()
        if not self.out.exists():
            return "fresh"
        if self._commit_plan() is not None:
            return "resume"
        previous = self._owned_manifest() if os.path.lexists(self.out / MANIFEST) else None
        if previous is not None and self.job.same_as(previous):
            if not check_outputs(self.out, previous.get("outputs") or [], full=False):
                return "done"
        elif previous is not None and not self.overwrite:
            self._refuse(previous)
        same_build = self.build.is_dir() and self.job.same_as(load_json(self.build / JOB_FILE))
        return "resume" if same_build else "fresh"

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if exc_type is not None and not self.resumable and self.state in ("fresh", "resume"):
                self._remove_build()
        finally:
            self._unlock()

    def _check_target(self) -> None:
        """Refuse, in one line, an ``--out`` that is not clusterclip's to write (module docstring)."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: is a file; give --out a directory path")
        resolved = out.resolve()
        for p in self.inputs:
            if p.exists() and p.resolve() == resolved:
                raise InputError(f"--out {out}: is also an input of this step; choose another --out")
        if not out.exists():
            return
        self._check_private()
        plan = self._commit_plan()
        if os.path.lexists(out / MANIFEST):
            self._owned_manifest(plan)
            return
        others = sorted(e.name for e in os.scandir(out) if e.name != PRIVATE_DIR)
        if others and plan is None:
            if os.path.lexists(self.private):
                raise MismatchError(
                    f"{out}: holds {others[0]}{' and more' if len(others) > 1 else ''} but no manifest.json, so "
                    f"clusterclip cannot tell its own files from others; restore manifest.json, or delete {out} "
                    f"(or choose another --out)")
            raise MismatchError(f"{out}: exists, is not empty and is not a clusterclip output directory; "
                                f"choose another --out")

    def _check_private(self) -> None:
        """``.clusterclip/`` and its entries are a real directory and real files (a link would lead elsewhere)."""
        if not os.path.lexists(self.private):
            return
        if self.private.is_symlink() or not self.private.is_dir():
            raise InputError(f"{self.private}: is not clusterclip's own directory (a link or a file); remove it")
        for name, want_dir in ((BUILD_DIR, True), (LOCK_FILE, False), (COMMIT_FILE, False), (OWNER_FILE, False),
                               (GENERATIONS_DIR, True)):
            path = self.private / name
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            ok = stat.S_ISDIR(st.st_mode) if want_dir else stat.S_ISREG(st.st_mode)
            if not ok:
                kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else ("a file" if want_dir else "not a file")
                raise InputError(f"{path}: is {kind}, not what clusterclip made there; clusterclip writes only "
                                 f"inside --out and never through a link: remove it")

    def _owned_manifest(self, plan: dict | None = None) -> dict:
        """``OUT/manifest.json``, after proving that clusterclip made this directory (module docstring)."""
        mp = self.out / MANIFEST
        if mp.is_symlink() or not mp.is_file():
            raise InputError(f"{mp}: is not a file (a link or a directory); clusterclip replaces only an output it "
                             f"made: choose another --out")
        loaded = load_json(mp)
        try:
            manifest = check_manifest(loaded, mp)
        except ClusterClipError as e:
            if loaded is None or loaded.get("tool") != "clusterclip":
                raise MismatchError(f"{self.out}: holds a manifest.json that clusterclip did not write; choose "
                                    f"another --out (clusterclip never replaces a directory it did not make)") from None
            raise type(e)(f"{str(e).split('; ')[0]}; clusterclip replaces only an output it can prove it made: "
                          f"restore the manifest, or delete {self.out} (or choose another --out)") from None
        digest = content_digest(manifest)
        owner = load_json(self.private / OWNER_FILE) or {}
        if owner.get("manifest_sha256") == digest or (plan or {}).get("manifest_sha256") == digest:
            return manifest
        if not owner and not os.path.lexists(self.private / OWNER_FILE):  # an earlier clusterclip wrote none
            self._check_not_a_part()
            if not self.overwrite:
                raise MismatchError(
                    f"{mp}: has no {PRIVATE_DIR}/{OWNER_FILE} (written by an earlier clusterclip, or copied from "
                    f"another directory); run `clusterclip verify --adopt {self.out}` (checks every file, then "
                    f"adopts the output), or pass --overwrite to replace it (every file is checked first)")
            self._check_adoptable(manifest, digest)
            return manifest
        raise MismatchError(
            f"{mp}: not the manifest clusterclip committed in {self.out} ({self.private / OWNER_FILE} records "
            f"another: copied from another directory?); clusterclip replaces only an output it made: delete "
            f"{self.out} (or choose another --out)")

    def _check_adoptable(self, manifest: dict, digest: str) -> None:
        """An output without ``committed.json`` (what clusterclip wrote before it had one) is taken as ours only
        when every file its manifest lists is there with its size and sha256 (so the commit replaces nothing but
        those very files) and it is not a part of another output (a ``mixtures`` schedule)."""
        if self._adopted == digest:
            return
        self._check_not_a_part()
        problems = check_outputs(self.out, manifest["outputs"], full=True)
        if problems:
            raise MismatchError(f"{problems[0]}; {self.out} has no {PRIVATE_DIR}/{OWNER_FILE} (written by an earlier "
                                f"clusterclip?) and clusterclip replaces only an output whose every file it can "
                                f"check: delete {self.out} (or choose another --out)")
        self._adopted = digest
        self.log(f"{self.out}: written by an earlier clusterclip (no {PRIVATE_DIR}/{OWNER_FILE}); every file "
                 f"checked: adopted")

    def _commit_plan(self) -> dict | None:
        """The plan of an interrupted commit, if there is one that can be finished (else one line)."""
        path = self.private / COMMIT_FILE
        if not os.path.lexists(path):
            return None
        plan = load_json(path)
        digest = (plan or {}).get("manifest_sha256")
        new_manifest = load_json(self.build / MANIFEST) if not self.build.is_symlink() else None
        if new_manifest is None:
            new_manifest = load_json(self.out / MANIFEST)
        lists = plan is not None and all(isinstance(plan.get(k), list) and all(isinstance(x, str) for x in plan[k])
                                         for k in ("new", "old_only"))
        if not lists or not digest or new_manifest is None or content_digest(new_manifest) != digest:
            raise MismatchError(f"{path}: an interrupted commit that cannot be finished (its plan does not name the "
                                f"manifest beside it); delete {self.out} and rerun, or choose another --out")
        return plan

    def _lock(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self.private.mkdir(exist_ok=True)
        except PermissionError:
            raise InputError(f"{self.out}: not writable; choose a --out you can write to") from None
        except (NotADirectoryError, FileExistsError):
            raise InputError(f"{self.out}: a part of this path is a file; give --out a directory path") from None
        path = self.private / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise InputError(f"{path}: cannot open the lock file ({e.strerror}); check the permissions of --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise BusyError(f"{self.out}: another clusterclip run is writing it ({holder}); wait for it to end "
                            f"or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}: clusterclip {self.job.step}\n".encode(), 0)
        self._lock_fd = fd
        checkpoint("locked")

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _decide(self) -> None:
        previous = self._owned_manifest() if os.path.lexists(self.out / MANIFEST) else None
        self.previous = previous
        if previous is not None and self._adopted is not None:  # --overwrite of an earlier clusterclip's output
            write_json_atomic(self.private / OWNER_FILE, {"manifest_sha256": self._adopted})
        if previous is not None and self.job.same_as(previous):
            problems = check_outputs(self.out, previous.get("outputs") or [], full=False)
            if not problems:
                self.state, self.manifest = "done", previous
                self._discard_build_of_other_jobs()
                return
            self.log(f"{problems[0]}: the finished output is damaged; rebuilding it")
        elif previous is not None and not self.overwrite:
            self._refuse(previous)
        if previous is not None:  # every path the commit will replace or delete: before any work
            self._check_paths(r["path"] for r in previous["outputs"])
        job_record = load_json(self.build / JOB_FILE)
        if self.build.is_dir() and self.job.same_as(job_record):
            self._check_no_links(self.build)
            self.state = "resume"
            return
        self._reset_build()
        self.state = "fresh"

    def _refuse(self, previous: dict) -> None:
        what = f"a finished `clusterclip {previous.get('step')}` run"
        if previous.get("step") != self.job.step:
            why = f"made by `clusterclip {previous.get('step')}`"
        elif previous.get("settings") != self.job.settings:
            why = "other settings: " + "; ".join(differences(previous.get("settings") or {}, self.job.settings))
        else:
            why = "other inputs: " + "; ".join(input_changes(previous.get("inputs") or {}, self.job.inputs))
        raise MismatchError(f"{self.out}: holds {what} with {why}; pass --overwrite to replace it "
                            f"(the old output stays until the new one is finished), or choose another --out")

    def _discard_build_of_other_jobs(self) -> None:
        if self.build.is_dir() and not self.job.same_as(load_json(self.build / JOB_FILE)):
            shutil.rmtree(self.build, ignore_errors=True)

    def _reset_build(self) -> None:
        self._remove_build()
        self.build.mkdir()
        write_json_atomic(self.build / JOB_FILE, self.job.record())

    def _remove_build(self) -> None:
        if os.path.lexists(self.build):
            if self.build.is_symlink() or not self.build.is_dir():
                raise InputError(f"{self.build}: is not clusterclip's own directory; remove it")
            shutil.rmtree(self.build)

    def _check_no_links(self, root: Path) -> None:
        """Refuse a build that holds a symbolic link anywhere (a resumed run would write through it)."""
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                if path.is_symlink():
                    raise InputError(f"{path}: is a symbolic link inside clusterclip's build; clusterclip writes only "
                                     f"inside --out and never through a link: remove {self.build}")

    def _check_paths(self, rels, *, replacing: frozenset = frozenset()) -> None:
        """Every ``rel`` under ``--out`` can be replaced or deleted without leaving it: no link on the way, no
        file where a directory goes, no directory where a file goes; and (for ``replacing``, the paths the
        commit writes) an existing file there belongs to the previous output."""
        old = {r["path"] for r in (self.previous or {}).get("outputs") or []}
        for rel in rels:
            target = check_inside(self.out, rel)
            for parent in list(reversed(Path(rel).parents))[1:]:
                p = self.out / parent
                if os.path.lexists(p) and not p.is_dir():
                    raise InputError(f"{p}: a file where this run writes a directory; move it away")
            try:
                st = os.lstat(target)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                raise InputError(f"{target}: is a directory where the output has a file; move it away")
            if rel in replacing and rel not in old:
                raise InputError(f"{target}: a file that clusterclip did not write (the previous manifest does not "
                                 f"list it) is where this run writes; move it away")

    def _check_not_a_part(self) -> None:
        """Refuse a directory that a clusterclip output around it lists (a ``mixtures`` schedule has no
        ``committed.json`` of its own: its files are the outer output's)."""
        container = load_json(self.out.parent / MANIFEST)
        if is_ours(container) and any(isinstance(r, dict) and r.get("path") == f"{self.out.name}/{MANIFEST}"
                                      for r in (container or {}).get("outputs") or []):
            raise MismatchError(f"{self.out}: is a part of the `clusterclip {(container or {}).get('step')}` output "
                                f"{self.out.parent}; rerun that step (or choose another --out)")

    # ------------------------------------------------------------------ adopting
    def adopt(self, check: Callable[[], list[str]]) -> str:
        """``clusterclip verify --adopt``: make a finished output that has no ``committed.json`` (written by a
        clusterclip before it had one) ours, so that reruns see "done" and ``--overwrite`` replaces it.

        Under the lock: the manifest must verify (layout and checksum) and ``check()`` (the full verification:
        every file's size and sha256, and what the step's owner knows) must find nothing wrong; then
        ``committed.json`` is written naming the manifest. Returns ``"adopted"``, or ``"ours"`` when it already
        was; raises one line (naming the first problem) and writes nothing otherwise."""
        if not self.out.is_dir():
            raise InputError(f"{self.out}: no such directory; give a clusterclip output directory")
        self._check_private()
        self._check_not_a_part()  # before the lock file is made in it
        self._lock()
        try:
            self._check_private()
            if self._commit_plan() is not None:
                raise MismatchError(f"{self.out}: a commit was interrupted there; rerun the step that made it to "
                                    f"finish it")
            mp = self.out / MANIFEST
            if mp.is_symlink() or not mp.is_file():
                raise InputError(f"{mp}: missing or not a file; only a finished clusterclip output can be adopted")
            manifest = load_json(mp)
            check_manifest(manifest, mp)
            assert manifest is not None
            digest = content_digest(manifest)
            if (load_json(self.private / OWNER_FILE) or {}).get("manifest_sha256") == digest:
                return "ours"
            problems = check()
            if not problems and content_digest(load_json(mp) or {}) != digest:
                problems = [f"{mp}: changed while it was checked"]
            if problems:
                more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
                raise IntegrityError(f"{problems[0]}{more}; {self.out} was not adopted: rebuild it with the step "
                                     f"that made it (--overwrite)")
            self._check_not_a_part()
            write_json_atomic(self.private / OWNER_FILE, {"manifest_sha256": digest})
            return "adopted"
        finally:
            self._unlock()

    # ------------------------------------------------------------------ finishing
    def records(self, names) -> list[dict]:
        """``file_record``s (size, sha256) of files of the build, by relative path."""
        return [file_record(self.build, n) for n in names]

    def manifest_for(self, job: Job, outputs: list[dict], statistics: dict, accounting: dict | None,
                     extra: dict | None) -> dict:
        """``manifest.json`` of a finished build: the job, every file's record, the step's statistics."""
        return build_manifest(job.step, job.settings, job.inputs, outputs, statistics, accounting, extra)

    def commit(self, manifest: dict, *, keep_previous: bool = False) -> None:
        """Replace the old output by the build: see the module docstring. ``manifest`` is written last.
        ``keep_previous``: the output being replaced stays readable as a generation (:func:`generation_dir`)."""
        new = [r["path"] for r in manifest["outputs"]]
        old = [r["path"] for r in (self.previous or {}).get("outputs") or []]
        old_only = sorted(set(old) - set(new))
        for rel in new:  # everything checked before the old manifest is touched
            src = check_inside(self.build, rel)
            if src.is_symlink() or not src.is_file():
                raise InputError(f"{src}: missing from the build or not a file (internal error)")
        self._check_paths(new + old_only, replacing=frozenset(new))
        if keep_previous and self.previous is not None and content_digest(self.previous) != content_digest(manifest):
            self._keep_generation(self.previous)
        write_bytes_atomic(self.build / MANIFEST, manifest_bytes(manifest))
        write_json_atomic(self.private / COMMIT_FILE, {"new": new, "old_only": old_only,
                                                       "manifest_sha256": content_digest(manifest)})
        self._roll_forward()
        self.manifest = manifest

    def _keep_generation(self, previous: dict) -> None:
        """``previous`` (the output in place) kept readable under :func:`generation_dir`: its manifest and a hard
        link of each of its files (a copy where links fail), so it costs no space while the files are shared and
        the outputs that name its digest still open it. Made beside and renamed into place: it is complete or
        absent."""
        digest = content_digest(previous)
        gen = generation_dir(self.out, digest)
        if (gen / MANIFEST).is_file() and content_digest(load_json(gen / MANIFEST) or {}) == digest:
            return
        problems = check_outputs(self.out, previous["outputs"], full=False)
        if problems:
            self.log(f"{problems[0]}: the output being replaced is damaged; it is not kept as a generation")
            return
        tmp = gen.with_name(f".{gen.name}.tmp")
        for stale in (tmp, gen):
            if os.path.lexists(stale):
                if stale.is_symlink() or not stale.is_dir():
                    raise InputError(f"{stale}: is not clusterclip's own directory; remove it")
                shutil.rmtree(stale)
        for rec in previous["outputs"]:
            dest = check_inside(tmp, rec["path"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(check_inside(self.out, rec["path"]), dest)
        write_bytes_atomic(tmp / MANIFEST, manifest_bytes(previous))
        fsync_dir(tmp)
        os.replace(tmp, gen)
        fsync_dir(gen.parent)

    def _roll_forward(self) -> None:
        plan = self._commit_plan()
        if plan is None:
            return
        out = self.out
        if (self.build / MANIFEST).exists():
            _unlink(out / MANIFEST)
        for rel in plan.get("new") or []:
            src = self.build / rel
            if not src.exists():
                continue  # moved before a crash
            dest = check_inside(out, rel)
            _make_parents(out, Path(rel).parent)
            os.replace(src, dest)
            checkpoint("commit.file")
        for rel in plan.get("old_only") or []:
            path = check_inside(out, rel)
            _unlink(path)
            _remove_empty_parents(out, Path(rel).parent)
        write_json_atomic(self.private / OWNER_FILE, {"manifest_sha256": plan["manifest_sha256"]})
        if (self.build / MANIFEST).exists():
            os.replace(self.build / MANIFEST, out / MANIFEST)
        fsync_dir(out)
        shutil.rmtree(self.build, ignore_errors=True)
        (self.private / COMMIT_FILE).unlink()


def input_changes(old: dict, new: dict) -> list[str]:
    """What differs between two inputs records, in words (for a refusal)."""
    out = []
    old_parts, new_parts = old.get("partitions") or [], new.get("partitions") or []
    if bool(old_parts) != bool(new_parts):
        out.append(f"it is a merge of {len(old_parts)} partitions and this run embeds the corpus itself" if old_parts
                   else f"it was embedded from the corpus in one run and this run merges {len(new_parts)} partitions")
    elif old_parts != new_parts:
        out.append("it merged other partition directories (or the same ones since re-embedded)")
    if old.get("files") is not None and new.get("files") is not None and old["files"] != new["files"]:
        before = {r.get("path"): r for r in old["files"]}
        now = {r.get("path"): r for r in new["files"]}
        for what, paths in (("input file(s) it did not read", [q for q in now if q not in before]),
                            ("of its input files not given now", [q for q in before if q not in now]),
                            ("input file(s) changed since", [q for q in now if q in before and now[q] != before[q]])):
            if paths:
                out.append(f"{len(paths)} {what} ({paths[0]}{', ...' if len(paths) > 1 else ''})")
        if not out:
            out.append("the input files are given in another order")
    for key in sorted((set(old) | set(new)) - {"files", "partitions"}):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and a.get("path") and b.get("path"):
            step = b.get("step") or key
            out.append(f"it was made from the {step} directory {a['path']}, this run reads {b['path']}"
                       if a["path"] != b["path"] else f"the {step} directory {b['path']} was rebuilt since")
        else:
            out.append(f"its {key} input differs")
    return out or ["the inputs differ"]


def _link_or_copy(src: Path, dest: Path) -> None:
    """``dest`` as a hard link of ``src`` (the same bytes, no space), or a copy where the file system has none."""
    try:
        os.link(src, dest, follow_symlinks=False)
    except OSError:
        shutil.copyfile(src, dest, follow_symlinks=False)


def _unlink(path: Path) -> None:
    """Remove a file or a link (never what a link points to, never a directory)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a directory where the old output had a file; move it away")
    os.unlink(path)


def _make_parents(root: Path, rel_dir: Path) -> None:
    """Create ``root/rel_dir`` (no link on the way: :func:`check_inside`)."""
    target = check_inside(root, rel_dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{target}: a part of this path is a file where this run writes a directory; "
                         f"move it away") from None


def _remove_empty_parents(root: Path, rel_dir: Path) -> None:
    parts = list(rel_dir.parts)
    while parts:
        path = root.joinpath(*parts)
        try:
            path.rmdir()  # only when empty
        except OSError:
            return
        parts.pop()


@dataclass
class StepResult:
    """What every step returns (:func:`clusterclip.steps.run_step`): its manifest, where, and how this call
    went (nothing of it is stored)."""

    manifest: dict
    out: Path
    state: str  #: "done" (nothing to do), "resume" or "fresh"
    seconds: float = 0.0
    processed: int = 0  #: items this call processed (documents embedded, samples written, ...)
    children: list = field(default_factory=list)  #: the results of the steps this one ran (``mixtures``)
    summary: str = ""  #: the step's summary line (what the CLI prints)

    @property
    def statistics(self) -> dict:
        return self.manifest.get("statistics", {})

    @property
    def settings(self) -> dict:
        return self.manifest.get("settings", {})

    @property
    def already_done(self) -> bool:
        return self.state == "done"
