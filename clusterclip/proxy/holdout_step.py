"""The ``holdout`` step: EMB + CL -> EVAL, the held-out documents of every cluster (SPEC §7).

:meth:`HoldoutStep.plan` draws the documents (pure and fast: :func:`.heldout.select_heldout`) and
reads the ``--target`` file, so a bad setting or an empty target file is refused before ``--out``
is touched; :meth:`HoldoutStep.run` writes ``heldout.parquet``; the driver commits it.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts import sha256_file
from ..cluster.directory import ClusterDir
from ..embed.directory import EmbedDir
from ..steps import Outcome, Plan, Run, Step
from .evaldir import EvalDir, HoldoutStats, write_heldout
from .heldout import DEFAULT_PER_CLUSTER, HeldoutSelection, select_heldout, target_texts
from .settings import HoldoutSettings

__all__ = ["EvalDir", "HoldoutStep"]


class HoldoutStep(Step[HoldoutSettings]):
    """Hold out documents of each cluster of ``cl`` (and note a target file) for scoring proxies."""

    name = "holdout"
    settings_class = HoldoutSettings
    resumable = False  # one small file: redone rather than checked

    def __init__(self, emb: EmbedDir, cl: ClusterDir, settings: HoldoutSettings, **kwargs):
        super().__init__(settings, **kwargs)
        self.emb = emb
        self.cl = cl
        self.selection: HeldoutSelection | None = None
        self.n_target = 0

    @classmethod
    def open(cls, emb_dir, cl_dir, settings: HoldoutSettings, **kwargs) -> HoldoutStep:
        return cls(EmbedDir(emb_dir), ClusterDir(cl_dir), settings, **kwargs)

    def upstream(self) -> dict:
        return {"embed": self.emb, "cluster": self.cl}

    def plan(self, out: Path, overwrite: bool) -> Plan:
        s = self.settings
        self.cl.check_belongs_to(self.emb)
        self.selection = select_heldout(self.cl.labels(), per_cluster=s.per_cluster, fraction=s.fraction, seed=s.seed)
        inputs = self.upstream_records()
        reads: tuple[Path, ...] = ()
        if s.target is not None:
            self.n_target = len(target_texts(s.target, s.target_column))
            p = Path(s.target)
            inputs["target"] = {"path": str(p.resolve()), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
            reads = (p,)
        record = s.record()
        if s.per_cluster is None and s.fraction is None:
            record["per_cluster"] = DEFAULT_PER_CLUSTER
        return Plan(record, inputs, reads=reads)

    def run(self, run: Run) -> Outcome:
        assert self.selection is not None
        name = write_heldout(run.build, self.selection.doc_id, self.selection.cluster)
        stats = HoldoutStats(**self.selection.statistics(), clusters=int(self.cl.k),
                             cluster_heldout=[int(v) for v in self.selection.per_cluster], target_texts=self.n_target)
        return Outcome([name], stats, accounting={"heldout_docs": len(self.selection), "corpus_docs": self.emb.n_docs},
                       processed=len(self.selection))

    def summary(self, result) -> str:
        st = HoldoutStats.from_json(result.statistics)
        unscored = len(st.unscored_clusters or [])
        note = f"; {unscored} clusters of one document are not scored" if unscored else ""
        target = f", plus {st.target_texts:,} target texts" if st.target_texts else ""
        lo, hi = st.min_per_cluster, st.max_per_cluster
        per = f"{lo}" if lo == hi else f"{lo}-{hi}"
        return (f"holdout: {st.heldout_docs:,} documents held out of {st.scored_clusters or 0:,} clusters "
                f"({per} per cluster){target}{note} -> {result.out}")


STEP = HoldoutStep
