"""The ``proxy`` step: SCHED... + EVAL -> RUNS, one small model per schedule and seed, scored on EVAL.

:meth:`ProxyStep.plan` refuses, before ``--out`` is touched, what would make the comparison unfair or
wrong: schedules of another corpus or clustering than EVAL, schedules not written with ``--exclude
EVAL`` (they could train on held-out documents), schedules of different tokenizers or delimiters,
and shards too small for one step. Every run trains the same number of steps (``--tokens``, else
one pass of the smallest schedule) from the same initial weights per seed.

:meth:`ProxyStep.run` tokenizes the held-out documents (and target texts) once with the schedules'
tokenizer, counts the training pool's tokens per cluster (what ``propose`` needs for the clip), then
trains and scores each run (:func:`.run.train_and_score`). A finished run is journaled with its
files' digests; a killed step keeps the finished runs and resumes the others from their last
checkpoint, to the same losses.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..artifacts.journal import Journal, files_intact
from ..cluster.directory import ClusterDir
from ..embed.directory import EmbedDir
from ..errors import InputError, MismatchError
from ..progress import bar as progress_bar
from ..schedule.directory import ScheduleDir
from ..steps import Outcome, Plan, Run, Step
from .evaldir import EvalDir
from .heldout import heldout_samples, schedule_tokenizer, tokenize_heldout
from .run import EvalDocs
from .runfiles import TARGET_GROUP, ProxyStats, RunsDir, write_runs
from .runner import RunTask, run_parallel, run_task
from .settings import ProxySettings
from .stream import SequentialLoader
from .train import Runtime, resolve_runtime

__all__ = ["ProxyStep", "RunsDir"]

WORK = ".work"


class ProxyStep(Step[ProxySettings]):
    """Train and score one proxy per schedule and seed (see the module docstring)."""

    name = "proxy"
    settings_class = ProxySettings

    def __init__(self, schedules: list[ScheduleDir], evaluation: EvalDir, settings: ProxySettings, **kwargs):
        super().__init__(settings, **kwargs)
        if not schedules:
            raise InputError("SCHED: give at least one schedule directory to train proxies on")
        self.schedules = schedules
        self.evaluation = evaluation
        self.emb = _recorded(EmbedDir, evaluation, "embed")
        self.cl = _recorded(ClusterDir, evaluation, "cluster")
        self.names = run_names([s.path for s in schedules])
        self.seeds = [settings.seed + i for i in range(settings.seeds)]
        self.steps = 0
        self.rare: np.ndarray = np.zeros(0, bool)  #: the rarer half of the clusters (by documents in the pool)
        self.workers = 1
        self.runtime: Runtime | None = None

    @classmethod
    def open(cls, sched_dirs, settings: ProxySettings, **kwargs) -> ProxyStep:
        if settings.eval_dir is None:
            raise InputError("--eval: required; give the `clusterclip holdout` directory to score the proxies on")
        return cls([ScheduleDir(p) for p in sched_dirs], EvalDir(settings.eval_dir), settings, **kwargs)

    def upstream(self) -> dict:
        ups: dict = {"eval": self.evaluation, "embed": self.emb, "cluster": self.cl}
        ups.update({f"schedule:{n}": s for n, s in zip(self.names, self.schedules)})
        return ups

    # ------------------------------------------------------------------ plan
    def plan(self, out: Path, overwrite: bool) -> Plan:
        s = self.settings
        first = self.schedules[0]
        for sched in self.schedules:
            self._check_schedule(sched, first)
        self.steps = planned_steps(s, self.schedules)
        self.workers, self.runtime = workers_and_runtime(s, self.steps, len(self.run_list()))
        record = {**s.record(), "steps": self.steps, "seeds": self.seeds, "runs": self.run_list()}
        return Plan(record, self.upstream_records())

    def _check_schedule(self, sched: ScheduleDir, first: ScheduleDir) -> None:
        if sched.dry_run:
            raise InputError(f"{sched.path}: a dry run (no shards); rerun `clusterclip schedule` without --dry-run")
        self.evaluation.check_same_inputs(sched)
        excluded = sched.info.upstream("exclude").get("manifest_sha256")
        if excluded != self.evaluation.record()["manifest_sha256"]:
            raise InputError(f"{sched.path}: not written with --exclude {self.evaluation.path}, so it may train on "
                             f"held-out documents; rerun `clusterclip schedule ... --exclude {self.evaluation.path}`")
        for key in ("tokenizer_digest", "bos_id", "eos_id"):
            if sched.settings.get(key) != first.settings.get(key):
                what = "tokenizer" if key == "tokenizer_digest" else "document delimiters"
                raise MismatchError(f"{sched.path}: another {what} than {first.path}; proxies compare schedules of "
                                    f"one tokenizer and one --convention: rewrite it with those of the others")

    def run_list(self) -> list[dict]:
        """``(run, schedule, seed)`` of every run, in the order they are trained."""
        return [{"run": f"{n}-s{seed}", "schedule": str(sched.path), "seed": seed}
                for n, sched in zip(self.names, self.schedules) for seed in self.seeds]

    # ------------------------------------------------------------------ run
    def run(self, run: Run) -> Outcome:
        work = run.build / WORK
        work.mkdir(exist_ok=True)
        evaluation = self._eval_docs(work)
        pool_docs, pool_tokens = self._pool(work)
        self.rare = rare_half(pool_docs)
        journal = Journal(work / "runs.jsonl")
        finished = {e["run"]: e for e in journal.load() if files_intact(run.build, e["files"])}
        runs = self.run_list()
        runtime = self.runtime
        assert runtime is not None  # resolved by plan()
        todo = [RunTask(item, run.build, self.settings, runtime, self.steps, self.cl.k, evaluation, self.rare,
                        f"{i + 1}/{len(runs)} {item['run']}") for i, item in enumerate(runs)
                if item["run"] not in finished]

        def done(entry: dict) -> None:
            journal.append(entry)
            finished[entry["run"]] = entry

        run_tokens = self.steps * self.settings.batch * self.settings.context
        with progress_bar(len(runs) * run_tokens, desc="proxy", unit="tok", unit_scale=True,
                          initial=(len(runs) - len(todo)) * run_tokens, enabled=self.progress) as pbar:
            if self.workers > 1 and len(todo) > 1:
                self.log(f"proxy: {len(todo)} runs, {self.workers} at once, {runtime.threads} thread(s) each")
                run_parallel(todo, self.workers, pbar, done)
            for task in todo:  # one worker: here, one after another
                if task.item["run"] not in finished:
                    done(run_task(task, pbar))
        records = [finished[item["run"]]["record"] for item in runs]
        files = [f for item in runs for f in finished[item["run"]]["files"]]
        shutil.rmtree(work, ignore_errors=True)
        names = write_runs(run.build, records, pool_docs, pool_tokens)
        stats = statistics(records, self.steps, self.settings, pool_tokens, len(evaluation.docs))
        return Outcome(names + files, stats, accounting={"runs": len(records), "heldout_docs": self.evaluation.n_docs},
                       processed=sum(r["train_tokens"] for r in records))

    def _eval_docs(self, work: Path) -> EvalDocs:
        """The held-out documents (then the target texts) tokenized once with the schedules' tokenizer."""
        doc_id, cluster = self.evaluation.heldout()
        texts = [t for _, t in self.emb.texts(doc_id)] + self.evaluation.target_texts()
        tok = schedule_tokenizer(self.schedules[0])
        store = tokenize_heldout(texts, tok, work / "eval-tokens", progress=self.progress)
        docs = heldout_samples(store, np.arange(len(texts)), bos_id=tok.bos_id, eos_id=tok.eos_id)
        groups = np.concatenate([cluster, np.full(len(texts) - len(cluster), TARGET_GROUP)]).astype(np.int64)
        return EvalDocs(docs, groups)

    def _pool(self, work: Path) -> tuple[np.ndarray, np.ndarray]:
        """Documents and tokens (with the delimiters) per cluster of the corpus minus the held-out documents."""
        from ..tokens.build import build_token_store

        labels = self.cl.labels()
        heldout, _ = self.evaluation.heldout()
        pool = np.setdiff1d(np.arange(len(labels)), heldout)
        tok = schedule_tokenizer(self.schedules[0])
        store = build_token_store(lambda: self.emb.texts(pool), len(labels), tok, work / "pool-tokens",
                                  progress=self.progress, total=len(pool))
        delimiters = int(tok.bos_id is not None) + int(tok.eos_id is not None)
        lengths = np.asarray(store.lengths, np.int64)[pool] + delimiters
        k = self.cl.k
        return (np.bincount(labels[pool], minlength=k).astype(np.int64),
                np.bincount(labels[pool], weights=lengths, minlength=k).astype(np.int64))

    def summary(self, result) -> str:
        st = ProxyStats.from_json(result.statistics)
        rates = [r["tokens_per_second"] for r in st.runs if r.get("tokens_per_second")]
        speed = f", {np.median(rates):,.0f} tokens/s" if rates else ""
        return (f"proxy: {len(st.runs)} runs of {st.steps or 0:,} steps ({st.train_tokens:,} tokens each{speed}) "
                f"-> {result.out}\n{loss_table(st.schedules or {})}")


#: the columns of the summary table: (statistics key, heading)
TABLE_COLUMNS = (("balanced", "cluster-balanced"), ("rare_half", "rare half"), ("common_half", "common half"),
                 ("overall", "overall"))


def loss_table(schedules: dict) -> str:
    """Held-out loss per schedule (mean ± spread over seeds) as aligned text: the proxy summary and the README."""
    seeds = sorted({c["seeds"] for c in schedules.values()})
    head = (f"held-out loss, nats/token: mean ± spread (standard deviation) over {'/'.join(map(str, seeds))} "
            f"seed(s); rare/common half: the clusters with the fewest/most documents")
    width = max([len("schedule")] + [len(n) for n in schedules])
    rows = [f"  {'schedule':<{width}}" + "".join(f"  {h:>17}" for _, h in TABLE_COLUMNS)]
    for name, c in schedules.items():
        cells = "".join(f"  {c[f'{k}_mean']:>8.4f} ± {c[f'{k}_spread']:.4f}" for k, _ in TABLE_COLUMNS)
        rows.append(f"  {name:<{width}}{cells}")
    return "\n".join([head, *rows])


def _recorded(owner, evaluation: EvalDir, key: str):
    """The embed or cluster directory EVAL was made from, at its recorded path, unchanged."""
    rec = evaluation.upstream(key)
    found = owner(rec["path"])
    if found.record()["manifest_sha256"] != rec["manifest_sha256"]:
        raise MismatchError(f"{rec['path']}: the {key} directory of {evaluation.path} changed since holdout read it; "
                            f"rerun `clusterclip holdout`")
    return found


def workers_and_runtime(s: ProxySettings, steps: int, runs: int) -> tuple[int, Runtime]:
    """Runs at once and each run's runtime: on the CPU one process per core (at most one per run) of one thread,
    unless --workers / --threads say otherwise; on CUDA one at a time."""
    from ..tokens.build import default_workers

    cores = default_workers()
    base = resolve_runtime(s, steps)
    if base.device.startswith("cuda"):
        return s.workers or 1, base
    workers = max(1, min(s.workers or cores, runs))
    threads = s.threads or max(1, cores // workers)
    return workers, Runtime(base.device, base.autocast, threads, base.compiled)


def rare_half(pool_docs: np.ndarray) -> np.ndarray:
    """The clusters of the rarer half (fewest documents in the training pool; ties: the lower id), as a mask."""
    docs = np.asarray(pool_docs)
    order = np.lexsort((np.arange(len(docs)), docs))
    mask: np.ndarray = np.zeros(len(docs), bool)
    mask[order[: len(docs) // 2]] = True
    return mask


def run_names(paths: list[Path]) -> list[str]:
    """A short unique name per schedule: its directory's name (``-2``, ``-3``... for repeats)."""
    names: list[str] = []
    for p in paths:
        base, n = Path(p).name or "schedule", 2
        name = base
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def planned_steps(s: ProxySettings, schedules: list[ScheduleDir]) -> int:
    """Steps of every run: ``--tokens`` in whole steps, else one pass of the smallest schedule (from the shard
    records alone: what each file holds, look-ahead and padding included)."""
    step_tokens = s.batch * s.context
    if s.tokens is not None:
        return max(s.tokens // step_tokens, 1)
    passes = []
    for sched in schedules:
        records = sched.shards_index()["shards"].get(s.format)
        if records is None:
            raise InputError(f"{sched.path}: holds no {s.format} shards; rerun `clusterclip schedule` with --format "
                             f"{s.format} (or pass --format of one it has)")
        sizes = [r["tokens"] + r.get("overlap", 0) + r.get("pad", 0) for r in records]
        steps = SequentialLoader([np.empty(n, np.uint8) for n in sizes], s.batch, s.context).steps_per_pass
        if steps == 0:
            raise InputError(f"{sched.path}: no {s.format} file holds one step of --batch {s.batch} x --context "
                             f"{s.context} + 1 tokens; lower them or write larger shards")
        passes.append(steps)
    return min(passes)


def statistics(records: list[dict], steps: int, s: ProxySettings, pool_tokens: np.ndarray, n_eval: int) -> ProxyStats:
    """The manifest's statistics: every run's figures and, per schedule, the mean and spread over seeds."""
    by_schedule: dict[str, list[dict]] = {}
    for r in records:
        by_schedule.setdefault(Path(r["schedule"]).name, []).append(r)
    schedules = {}
    for name, rs in by_schedule.items():
        fig: dict[str, float] = {"seeds": len(rs)}
        for key in ("balanced", "rare_half", "common_half", "overall"):
            values = np.array([r[key] for r in rs], float)
            fig[f"{key}_mean"] = float(values.mean())
            fig[f"{key}_spread"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        schedules[name] = fig
    keep = ("run", "schedule", "seed", "balanced", "rare_half", "common_half", "overall", "target",
            "final_train_loss", "tokens_per_second", "resumed_at_step", "parameters", "runtime", "sampler",
            "max_repeats")
    return ProxyStats(runs=[{k: r[k] for k in keep} for r in records], schedules=schedules, steps=steps,
                      train_tokens=steps * s.batch * s.context, pool_tokens=int(pool_tokens.sum()),
                      heldout_texts=n_eval, clusters=len(pool_tokens))


STEP = ProxyStep
