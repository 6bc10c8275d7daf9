"""``build_report``: the HTML report of an embed + cluster (+ schedule) run.

Output directory (``out_dir``):

- ``index.html``: the page, self-contained (figures inlined as PNG data URIs);
- ``figures/*.png``: the same figures as files;
- ``report.json``: the numbers behind the page (every figure's plotted data, the table and, with a schedule,
  its mixture certificate: :mod:`.certificate`); the page itself is :class:`.page.Page`;
- ``manifest.json``: ``step: "report"``, settings, inputs (upstream manifest digests), outputs; written last.

The directory is written like every step's output (:class:`ReportStep`, run by the one driver
:func:`clusterclip.steps.run_step`): built beside the old report and replacing it at the end, never a
directory clusterclip did not make, never through a symbolic link, one run at a time; a report of
other inputs or settings is replaced only with ``overwrite``.
"""

from __future__ import annotations

from pathlib import Path

from ..cluster.directory import ClusterDir
from ..embed.directory import EmbedDir
from ..schedule.directory import ScheduleDir
from ..steps import Outcome, Plan, Run, Step, run_step
from . import inputs, proxy
from .groups import Groups, read_groups
from .page import Page
from .settings import ReportSettings


class ReportStep(Step[ReportSettings]):
    """The HTML report of ``emb`` + ``cl`` (+ a schedule ``sched``)."""

    name = "report"
    settings_class = ReportSettings

    def __init__(self, emb: EmbedDir, cl: ClusterDir, sched: ScheduleDir | None, settings: ReportSettings, *,
                 shown_as: tuple | None = None, **kwargs):
        super().__init__(settings, **kwargs)
        self.emb, self.cl, self.sched = emb, cl, sched
        self.proxies = proxy.ProxyInputs.open(settings.runs, settings.fit)  #: --runs / --fit (None: none)
        #: the directories as the user named them (the page shows them so)
        self.shown_as = shown_as or (emb.path, cl.path, sched.path if sched is not None else None)
        self.info: inputs.ClusterInfo | None = None
        self.embed: inputs.EmbedInfo | None = None
        self.sched_info: inputs.ScheduleInfo | None = None
        self.groups: Groups | None = None

    @classmethod
    def open(cls, emb_dir, cl_dir, sched_dir, settings: ReportSettings, **kwargs) -> ReportStep:
        cl = ClusterDir(cl_dir)
        given = EmbedDir(emb_dir)
        emb = given.as_recorded(cl.embed_record)  # as CL knew it, when `embed --incremental` grew it since
        sched = ScheduleDir(sched_dir) if sched_dir is not None else None
        return cls(emb, cl, sched, settings, shown_as=(emb_dir if emb is given else emb.path, cl_dir, sched_dir),
                   **kwargs)

    def upstream(self) -> dict:
        found = {"embed": self.emb, "cluster": self.cl}
        if self.sched is not None:
            found["schedule"] = self.sched
        if self.proxies is not None:
            found.update(self.proxies.upstream())
        return found

    def plan(self, out: Path, overwrite: bool) -> Plan:
        self.info = inputs.read_clusters(self.cl.path)
        self.embed = inputs.read_embed(self.emb.path)
        inputs.check_embed_matches(self.emb.path, self.info)
        self.sched_info = inputs.read_schedule(self.sched.path, self.info) if self.sched is not None else None
        if self.proxies is not None:
            self.proxies.check(self.cl)
        if self.settings.group_by is not None:  # a column that is not there is refused before --out is touched
            self.groups = read_groups(self.emb, self.settings.group_by)
        return super().plan(out, overwrite)

    def run(self, run: Run) -> Outcome:
        assert self.info is not None and self.embed is not None
        labels = self.cl.labels() if self.groups is not None else None
        page = Page(self.settings, self.info, self.embed, self.sched_info, *self.shown_as, groups=self.groups,
                    labels=labels)
        if self.proxies is not None:
            page.extra_sections.append(self.proxies.section)
        return page.write(run.build)

    def summary(self, result) -> str:
        index = result.out / "index.html"
        return f"report: {index} in {result.seconds:.1f}s; open {index.resolve().as_uri()} in a browser"

    def done_line(self, result) -> str:
        return self.summary(result)


STEP = ReportStep


def build_report(
    emb_dir: str | Path,
    cl_dir: str | Path,
    sched_dir: str | Path | None = None,
    out_dir: str | Path = "report",
    settings: ReportSettings | None = None,
    *,
    overwrite: bool = False,
    **options,
) -> Path:
    """Write the report of ``emb_dir`` + ``cl_dir`` (+ ``sched_dir``) into ``out_dir``; return ``index.html``'s path.

    ``settings`` (a :class:`ReportSettings`), or its fields as keyword arguments
    (``sample_docs``, ``max_sample_docs``, ``max_table_clusters``, ``max_repeats``, ``seed``,
    ``map`` or ``map_method``). ``max_repeats``: the clip of the expected ``clusterclip`` mix
    drawn when no schedule is given (one epoch); with a ``clusterclip`` schedule its own
    settings are used. ``max_table_clusters``: the table lists at most this many clusters.
    """
    if "map_method" in options:
        options["map"] = options.pop("map_method")
    s = settings if settings is not None else ReportSettings.build(options)
    result = run_step(ReportStep.open(emb_dir, cl_dir, sched_dir, s), out_dir, overwrite=overwrite)
    return result.out / "index.html"


