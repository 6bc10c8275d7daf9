"""Artifact directories: atomic files, manifests, the output-directory transaction, corpus identity.

- :mod:`.files` — atomic writes, sha256, canonical JSON, symlink-safe paths;
- :mod:`.manifest` — ``manifest.json``: build, read (checked), verify the recorded files;
- :mod:`.output` — :class:`OutputDir`: lock ``--out``, build beside the old output, commit at the end;
- :mod:`.corpus` — corpus files identified by content digest.

Each step's directory has one owner class built on these (``EmbedDir``, ``ClusterDir``,
``ScheduleDir``); other modules go through the owners.
"""

from .files import (
    atomic_path,
    check_inside,
    dumps_json,
    file_record,
    is_disk_full,
    remove_stale_temporaries,
    save_npy_atomic,
    sha256_file,
    temp_file_beside,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from .manifest import (
    MANIFEST,
    build_manifest,
    check_outputs,
    manifest_digest,
    read_manifest,
    require_outputs,
    upstream_record,
)
from .output import PRIVATE_DIR, Job, OutputDir, StepResult

__all__ = [
    "MANIFEST", "PRIVATE_DIR", "Job", "OutputDir", "StepResult", "atomic_path", "build_manifest", "check_inside",
    "check_outputs", "dumps_json", "file_record", "is_disk_full", "manifest_digest", "read_manifest",
    "remove_stale_temporaries", "require_outputs", "save_npy_atomic", "sha256_file", "temp_file_beside",
    "upstream_record", "write_bytes_atomic", "write_json_atomic", "write_parquet_atomic",
]
