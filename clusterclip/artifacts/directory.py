"""What every finished artifact directory's owner shares: open = the manifest checked, every file sized."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from ..errors import IntegrityError
from ..remote import refuse_remote
from .manifest import MANIFEST, read_manifest, require_outputs, upstream_record


class ArtifactDir:
    """A finished directory of ``step``: manifest read and checked (its own checksum included), every
    recorded file size-checked (sha256 too with ``verify``). Subclasses add what their step's
    consumers need; every read goes through :meth:`verify` first."""

    step: ClassVar[str] = "?"

    def __init__(self, path: str | os.PathLike, *, verify: bool = False):
        refuse_remote(path, "input")
        self.path = Path(path)
        self.manifest = read_manifest(self.path, self.step)
        require_outputs(self.path, self.manifest, full=verify)
        self.settings: dict = self.manifest["settings"]
        self.statistics: dict = self.manifest["statistics"]
        from .manifest import Manifest

        self.info = Manifest.from_json(self.manifest)  #: the manifest as data (read this, not the dict)
        self._record: dict | None = None

    def record(self) -> dict:
        """How a downstream manifest names this directory (path and manifest digest)."""
        if self._record is None:
            self._record = upstream_record(self.path, self.step)
        return dict(self._record)

    def verify(self, only: set[str] | None = None) -> None:
        """Check the sha256 of every file (or of ``only``, each of which must be recorded) against the manifest."""
        if only is not None:
            recorded = {r["path"] for r in self.manifest["outputs"]}
            unknown = sorted(set(only) - recorded)
            if unknown:
                raise IntegrityError(f"{self.path / unknown[0]}: not recorded in {self.path / MANIFEST}, so it "
                                     f"cannot be checked; run `clusterclip verify {self.path}`, then rerun "
                                     f"`clusterclip {self.step}`")
        require_outputs(self.path, self.manifest, full=True, only=only)

    def verify_file(self, name: str) -> None:
        self.verify({name})

    def parquet(self, name: str):
        """``pyarrow.parquet.ParquetFile`` of one recorded file, its digest checked first (a one-line error if unreadable)."""
        self.verify_file(name)
        return open_parquet(self.path / name, self.step)


def open_parquet(path: Path, step: str):
    """A ``ParquetFile``, or one line naming the file and the step that rebuilds it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise IntegrityError(f"{path}: unreadable ({str(e).splitlines()[0]}); rerun `clusterclip {step} --overwrite`"
                             ) from None
