"""Object storage and other remote locations (``s3://``, ``gs://``, ``hf://``, ``https://``...): refused in one line.

clusterclip reads and writes files by path, on a local or shared (mounted) file system: every
output is built beside the old one and replaced atomically (a rename), under a lock file, and Ray
workers on other nodes open the same paths. Object stores offer neither rename nor locks, so a
remote URL is refused before anything is read or written, wherever a path is given: corpus inputs
(:func:`clusterclip.readers.expand_inputs`), input directories (:class:`clusterclip.artifacts.directory.ArtifactDir`),
``--tokenizer`` and ``--model``, and ``--out`` (:class:`clusterclip.artifacts.output.OutputDir`). The fix is a mount of the bucket
(s3fs, mountpoint-s3, gcsfuse, blobfuse) or a copy (``aws s3 sync``, ``gcloud storage rsync``).
"""

from __future__ import annotations

import os
import re

from .errors import InputError

#: ``scheme://`` as typed, or ``scheme:/`` as ``pathlib.Path`` leaves it (``Path("s3://b")`` is ``s3:/b``)
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_MANGLED = re.compile(r"^(s3|s3a|gs|gcs|az|abfs|abfss|adl|wasb|wasbs|hdfs|hf|http|https|ftp|sftp|oss|r2):/[^/]",
                      re.IGNORECASE)


def remote_scheme(path: str | os.PathLike) -> str | None:
    """The URL scheme of ``path`` (``"s3"``) when it names a remote location, else None."""
    text = os.fspath(path)
    found = _URL.match(text) or _MANGLED.match(text)
    return found.group(1).lower() if found else None


def refuse_remote(path: str | os.PathLike, role: str) -> None:
    """One line when ``path`` is remote. ``role``: ``"input"`` (a corpus file or an input directory), ``"output"``,
    or the option that names a model or tokenizer (``"--model"``, ``"--tokenizer"``)."""
    scheme = remote_scheme(path)
    if scheme is None:
        return
    text = os.fspath(path)
    if role in ("--tokenizer", "--model"):
        raise InputError(f"{role} {text}: remote files ({scheme}://) are not read directly; download it to a local "
                         f"folder (e.g. `aws s3 cp --recursive`, `huggingface-cli download NAME --local-dir DIR`) and "
                         f"give that folder, or give a hub name (e.g. gpt2)")
    if role == "output":
        raise InputError(f"--out {text}: object storage ({scheme}://) is not written directly (an output is replaced "
                         f"by a rename, under a lock); write to a local or shared path, or a mount of the bucket "
                         f"(e.g. mountpoint-s3, gcsfuse), then copy it (e.g. `aws s3 sync`)")
    raise InputError(f"{text}: remote inputs ({scheme}://) are not read directly; copy the files to a local or "
                     f"mounted path first (e.g. `aws s3 sync`, `huggingface-cli download`) and give that path")
