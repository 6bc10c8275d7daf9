"""What a step is: :class:`Step` (settings, typed inputs, ``plan``, ``run``), and what passes between it
and the driver: the :class:`Plan` (the output's identity, before anything is written), the :class:`Run`
(where to write) and the :class:`Outcome` (what was written: files, statistics, accounting)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, ContextManager, Generic, Mapping, Protocol, Sequence, TypeVar

from ..artifacts.manifest import Stats
from ..errors import InputError
from ..settings import Settings

if TYPE_CHECKING:
    from ..artifacts import Job, StepResult
    from ..artifacts.directory import ArtifactDir
    from ..engines import Engine

S = TypeVar("S", bound=Settings)


def _silent(message: str) -> None:
    """The default ``log``: notes go nowhere (the CLI passes one that prints them on stderr)."""


@dataclass
class Plan:
    """What a step will make, known before ``--out`` is touched.

    ``settings`` and ``inputs`` become the manifest's ``settings`` and ``inputs``; with the step's
    artifact name they are the output's identity (a finished output of the same three is "done";
    another is refused unless ``--overwrite``). ``reads``: paths the step reads besides its
    upstream directories (never the ``--out``, never written). ``replaces``: the step itself allows
    replacing a finished output of another job (``embed --incremental``).
    """

    settings: dict
    inputs: dict
    reads: tuple[Path, ...] = ()
    replaces: bool = False
    state: str | None = None  #: filled by :func:`~clusterclip.steps.preview`: "done", "resume" or "fresh"


@dataclass
class Run:
    """A run in progress, as the step's :meth:`Step.run` sees it: write under :attr:`build` only."""

    out: Path  #: the ``--out`` (never written by the step: the commit replaces it)
    build: Path  #: where the step writes its outputs, at their final relative paths
    state: str  #: "fresh" (an empty build) or "resume" (an interrupted build of the same job)
    previous: dict | None  #: the manifest of the finished output this run replaces (read under the lock)
    plan: Plan

    @property
    def resume(self) -> bool:
        return self.state == "resume"


@dataclass
class Outcome:
    """What :meth:`Step.run` made; the driver records the files (size, sha256) and writes the manifest.

    ``files``: relative paths under the build (recorded by the driver) or ready file records
    (``{"path", "bytes", "sha256"}``, e.g. shards hashed as they were written). ``statistics``: the
    step's :class:`~clusterclip.artifacts.manifest.Stats` (``EmbedStats``, ...; a dict for the steps
    whose statistics only their own summary reads). ``extra``: further top-level manifest keys. ``processed``: items this call processed (for the summary's rate).
    """

    files: Sequence[str | dict]
    statistics: dict | Stats
    accounting: dict | None = None
    extra: dict | None = None
    processed: int = 0
    children: list = field(default_factory=list)  #: results of steps this one ran (``mixtures``)
    #: the output this run replaces stays readable as a generation that the outputs made from it still open
    #: (``embed --incremental``; :func:`~clusterclip.artifacts.output.generation_dir`)
    keep_previous: bool = False

    def statistics_record(self) -> dict:
        """The manifest's ``statistics`` (a :class:`~clusterclip.artifacts.manifest.Stats` writes its own JSON)."""
        return self.statistics.to_json() if isinstance(self.statistics, Stats) else self.statistics


class Output(Protocol):
    """The transaction on ``--out`` that the driver runs a step in: :class:`~clusterclip.artifacts.OutputDir` (a
    directory and its ``manifest.json``, every step but one) or a step's own (``propose``: one file and its sidecar
    manifest). Entering decides :attr:`state`: "done" (:attr:`manifest` holds the finished output's manifest),
    "resume" or "fresh" (write under :attr:`build`); :meth:`commit` puts the manifest in place last."""

    state: str | None
    manifest: dict | None
    previous: dict | None  #: the manifest of the finished output a run replaces
    build: Path

    def __enter__(self) -> Output: ...

    def __exit__(self, exc_type: Any, *exc: Any) -> None: ...

    def peek(self) -> str:
        """What entering would decide, read-only: "done", "resume" or "fresh" (or the one-line refusal)."""
        ...

    def manifest_for(self, job: Job, outputs: list[dict], statistics: dict, accounting: dict | None,
                     extra: dict | None) -> dict:
        """The manifest of a finished run: ``outputs`` are the files' records (path, bytes, sha256)."""
        ...

    def commit(self, manifest: dict, *, keep_previous: bool = False) -> None: ...


class Step(Generic[S]):
    """One step of the pipeline (see the package docstring). Subclasses set the class attributes, take
    their typed inputs in ``__init__`` and define :meth:`run` (and usually :meth:`plan`, :meth:`summary`)."""

    #: the step's name: its registry key and ``clusterclip`` subcommand
    name: ClassVar[str] = "?"
    #: the ``step`` of the manifest it writes (default: its name; ``merge`` writes an ``embed`` directory)
    artifact: ClassVar[str | None] = None
    settings_class: ClassVar[type[Settings]] = Settings
    #: the class of its manifest's ``statistics`` (what :func:`~clusterclip.artifacts.manifest.describe` reads)
    stats_class: ClassVar[type[Stats] | None] = None
    #: False: a failed or killed run removes its build and starts again (a step faster to redo than to check)
    resumable: ClassVar[bool] = True

    def __init__(self, settings: S, *, progress: bool = True, log: Callable[[str], None] | None = None):
        if not isinstance(settings, self.settings_class):
            raise InputError(f"settings must be a {self.settings_class.__name__}, got {type(settings).__name__}")
        self.settings: S = settings
        self.progress = progress
        self.log: Callable[[str], None] = log or _silent

    # ------------------------------------------------------------------ what a step defines
    def upstream(self) -> Mapping[str, ArtifactDir]:
        """The finished directories this step reads, by their key in the manifest's ``inputs``."""
        return {}

    def plan(self, out: Path, overwrite: bool) -> Plan:
        """Everything that can be computed and refused before ``out`` is touched (the default: the settings
        record and the upstream directories' records). ``overwrite``: the caller allows replacing a finished
        output of another job (most steps leave that to the driver)."""
        return Plan(self.settings.record(), self.upstream_records())

    def preflight(self) -> None:
        """Before ``--out`` is touched: refuse (one line) an engine that cannot run here (Ray missing, an
        address nobody answers). The default asks the step's engine, when its settings name one."""
        if hasattr(self.settings, "engine"):
            self.engine.preflight(self.settings)

    def output(self, out: Path, job: Job, *, overwrite: bool, inputs: tuple[Path, ...]) -> Output:
        """The transaction on ``out`` (default: an output directory, :class:`~clusterclip.artifacts.OutputDir`);
        ``inputs``: the paths this step reads (never the ``out``)."""
        from ..artifacts import OutputDir

        return OutputDir(out, job, overwrite=overwrite, inputs=inputs, log=self.log, resumable=self.resumable)

    def environment(self) -> ContextManager[Any]:
        """Held while :meth:`run` runs (e.g. faiss's thread count); nothing by default."""
        return contextlib.nullcontext()

    def run(self, run: Run) -> Outcome:
        """Write the outputs under ``run.build``; return what was made. The driver commits."""
        raise NotImplementedError

    def summary(self, result: StepResult) -> str:
        """What the CLI prints at the end of a run that did the work (stdout)."""
        return f"{self.name}: done in {result.seconds:.1f}s -> {result.out}"

    def warnings(self, result: StepResult) -> list[str]:
        """Lines the CLI prints on stderr after the summary (``warning: ...``); none by default."""
        return []

    def done_line(self, result: StepResult) -> str:
        """What the CLI prints when the output was already done (nothing to do)."""
        return f"{self.name}: {result.out} is already done with these inputs and settings (nothing to do)"

    # ------------------------------------------------------------------ shared helpers
    @property
    def artifact_name(self) -> str:
        return self.artifact or self.name

    @property
    def engine(self) -> Engine:
        """Where this step's tasks run (``settings.engine``; the local engine when the settings name none)."""
        from ..engines import engine

        return engine(getattr(self.settings, "engine", "local"))

    def upstream_records(self) -> dict:
        """``{key: {"step", "path", "manifest_sha256"}}`` of :meth:`upstream` (how the manifest names them)."""
        return {key: d.record() for key, d in self.upstream().items()}


def settings_from(settings: Settings | None, kwargs: dict, cls: type[S]) -> S:
    """A settings object from ``settings`` or keyword arguments (not both): what the public functions take."""
    if settings is not None and kwargs:
        raise InputError(f"give either settings= or keyword settings ({', '.join(sorted(kwargs))}), not both")
    if settings is None:
        return cls.build(kwargs)
    if not isinstance(settings, cls):
        raise InputError(f"settings must be a {cls.__name__}, got {type(settings).__name__}")
    return settings
