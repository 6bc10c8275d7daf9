"""``clusterclip verify DIR``: check every file of an embed, cluster, schedule or mixtures directory in full.

Every file the manifest lists is checked for its size and sha256, the manifest for its own
checksum, and the directory for what its owner knows about it (part shapes, document counts,
doc ids, shard index). For an embed directory the corpus files are checked by content too.
Returns one line per problem, naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .artifacts import Job, OutputDir, check_outputs, read_manifest
from .errors import ClusterClipError
from .remote import refuse_remote
from .settings import REHASH_HELP, Settings, setting


@dataclass(frozen=True)
class VerifySettings(Settings):
    """How ``clusterclip verify`` checks (see its ``--help``)."""

    step = "verify"

    no_corpus: bool = setting(False, flag="--no-corpus", kind=bool, group="input",
                              help="Embed directories: do not check the corpus files.")
    rehash_inputs: bool = setting(False, flag="--rehash-inputs", kind=bool, group="input", help=REHASH_HELP)
    adopt: bool = setting(False, flag="--adopt", kind=bool, group="output",
                          help="Adopt each DIR written by an earlier clusterclip (no .clusterclip/committed.json) "
                               "once every check passes, so reruns and --overwrite treat it as their own.")


def verify_directory(path: str | os.PathLike, *, corpus: bool = True, rehash: bool = False) -> tuple[dict | None, list[str]]:
    """``(manifest or None, problems)`` of the output directory ``path``."""
    d = Path(path)
    try:
        refuse_remote(path, "input")
        manifest = read_manifest(d, None)
    except ClusterClipError as e:
        return None, [str(e)]
    problems = check_outputs(d, manifest.get("outputs") or [], full=True)
    if problems:
        return manifest, problems
    step = manifest["step"]
    try:
        if step == "embed":
            _verify_embed(d, corpus, rehash)
        elif step == "cluster":
            _verify_cluster(d)
        elif step == "schedule":
            problems.extend(_verify_schedule(d))
        elif step == "mixtures":
            problems.extend(_verify_mixtures(d))
    except ClusterClipError as e:
        problems.append(str(e))
    return manifest, problems


def adopt_directory(path: str | os.PathLike, *, corpus: bool = True,
                    rehash: bool = False) -> tuple[dict | None, list[str], str | None]:
    """``clusterclip verify --adopt DIR``: :func:`verify_directory` under the lock of ``DIR`` and, when it finds
    nothing wrong, ``DIR`` adopted (:meth:`~clusterclip.artifacts.OutputDir.adopt`). Returns ``(manifest,
    problems, state)``: state ``"adopted"``, ``"ours"`` (it already was) or None (problems: nothing written)."""
    found: dict = {}

    def check() -> list[str]:
        found["manifest"], found["problems"] = verify_directory(path, corpus=corpus, rehash=rehash)
        return found["problems"]

    try:
        state = OutputDir(path, Job("verify --adopt", {}, {})).adopt(check)
    except ClusterClipError as e:
        return found.get("manifest"), found.get("problems") or [str(e)], None
    if "manifest" not in found:  # already ours: verified as usual
        found["manifest"], problems = verify_directory(path, corpus=corpus, rehash=rehash)
        return found["manifest"], problems, state if not problems else None
    return found["manifest"], [], state


def _verify_embed(d: Path, corpus: bool, rehash: bool) -> None:
    from .embed.directory import EmbedDir

    emb = EmbedDir(d)
    emb.store()  # part shapes and total rows against the manifest
    n = 0
    for batch in emb.iter_docs(["doc_id"]):
        ids = batch.column(0).to_numpy()
        if len(ids) and (ids[0] != n or ids[-1] != n + len(ids) - 1):
            raise ClusterClipError(f"{emb.docs_file()}: doc_id is not 0..N-1 in order near row {n}")
        n += len(ids)
    if corpus:
        emb.check_corpus(rehash=rehash)


def _verify_cluster(d: Path) -> None:
    from .cluster.directory import ClusterDir

    cl = ClusterDir(d)
    cl.labels()
    cl.centroids()
    table = cl.clusters_table()
    if table.num_rows != cl.k:
        raise ClusterClipError(f"{d / 'clusters.parquet'}: {table.num_rows} rows but k={cl.k}")


def _verify_schedule(d: Path) -> list[str]:
    from .schedule.directory import ScheduleDir

    sd = ScheduleDir(d)
    sd.order_row(0) if sd.n_samples else None
    if sd.dry_run:
        return []
    from .shards import verify_shards

    problems = verify_shards(d)
    if not problems and sd.order_rows() != sd.shards_index()["n_samples"]:
        problems.append(f"{d / 'order.parquet'}: {sd.order_rows()} rows but shards.json holds "
                        f"{sd.shards_index()['n_samples']} samples; rerun `clusterclip schedule` into a new --out "
                        f"(or with --overwrite)")
    return problems


def _verify_mixtures(d: Path) -> list[str]:
    """Every file's digest is checked by then; the weights table and every mixture's schedule, as a schedule."""
    from .schedule.mixtures_dir import MixturesDir

    mix = MixturesDir(d)
    problems = mix.check()
    for i in range(mix.n):
        if not problems:
            problems.extend(_verify_schedule(mix.schedule_dir(i)))
    return problems
