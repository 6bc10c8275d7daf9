"""The shape of the package, checked: one owner per artifact file, no step <-> engine import cycle,
and a new step, engine or shard format is one module plus one registry line (a toy one of each is
registered and run here)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO, tree_bytes

PACKAGE = REPO / "clusterclip"

#: every artifact file name (and the constants that spell them), and the modules that own them
ARTIFACT_NAMES = {
    "manifest.json", "docs.parquet", "centroids.npy", "assignments.parquet", "clusters.parquet", "order.parquet",
    "shards.json", "tokens.bin", "lengths.npy", "offsets.npy", "meta.json", "progress.json", "journal.jsonl",
    "MANIFEST", "DOCS_FILE", "CENTROIDS", "ASSIGNMENTS", "CLUSTERS", "ORDER_FILE", "INDEX_FILE", "TOKENS", "META",
    "PROGRESS", "JOURNAL", "TRAIN_STATE", "TOKENS_PARTIAL", "DOCS_PARTIAL", "part_name", "docs_part_name",
    "docs_file", "order_file", "heldout_loss.parquet", "loss_curve.parquet", "checkpoint.pt", "HELDOUT_LOSS",
    "LOSS_CURVE", "CHECKPOINT", "SIDECAR_SUFFIX", "heldout.parquet", "HELDOUT_FILE", "runs.parquet", "RUNS_FILE",
    "mixtures.parquet", "MIXTURES_FILE", "pool.parquet", "POOL_FILE", "fit.json", "FIT_FILE", "points.parquet",
    "POINTS_FILE", "MODEL_FILE", "law.parquet", "LAW_FILE", "weights.parquet", "WEIGHTS_FILE",
}
OWNERS = {
    "artifacts/directory.py", "artifacts/manifest.py", "artifacts/output.py", "artifacts/journal.py",
    "artifacts/files.py", "artifacts/corpus.py",
    "embed/directory.py", "embed/store.py", "embed/writer.py", "cluster/directory.py", "schedule/directory.py", "shards/index.py", "tokens/store.py", "tokens/build.py",
    "proxy/runfiles.py", "proxy/evaldir.py", "mixsearch/weights.py", "mixsearch/fitdir.py",
    "schedule/mixtures_dir.py",
}
#: the calls that open or read a file
READERS = {"open", "load", "loads", "read_table", "ParquetFile", "read_metadata", "read_schema", "memmap", "fromfile",
           "read_text", "read_bytes", "iter_batches"}


def _called_name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _mentions_artifact(node: ast.AST) -> str | None:
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in ARTIFACT_NAMES:
            return n.value
        if isinstance(n, ast.Name) and n.id in ARTIFACT_NAMES:
            return n.id
        if isinstance(n, ast.Attribute) and n.attr in ARTIFACT_NAMES:
            return n.attr
    return None


def artifact_reads(source: str) -> list[tuple[int, str, str]]:
    """``(line, call, artifact)`` of every call that opens or reads an artifact file by name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _called_name(node) in READERS:
            target = node.func.value if isinstance(node.func, ast.Attribute) and _called_name(node) in (
                "read_text", "read_bytes") else None
            what = _mentions_artifact(ast.Tuple(elts=[*node.args, *(k.value for k in node.keywords)]
                                                + ([target] if target is not None else []), ctx=ast.Load()))
            if what:
                found.append((node.lineno, _called_name(node), what))
    return found


def test_only_the_owners_open_artifact_files():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in OWNERS:
            continue
        offenders += [f"{rel}:{line}: {call}(... {what} ...)" for line, call, what in artifact_reads(path.read_text())]
    assert offenders == [], "read these through their owner (EmbedDir, ClusterDir, ScheduleDir, TokenStore, ...)"


@pytest.mark.parametrize("code", [
    "json.loads((out / 'shards.json').read_text())",
    "pq.read_table(d / ORDER_FILE)",
    "np.load(self.path / CENTROIDS)",
    "open(p / TOKENS, 'rb')",
    "(out / INDEX_FILE).read_text('utf-8')",
])
def test_the_owner_scan_sees_a_direct_read(code):
    assert artifact_reads(code), code


def _import_graph() -> dict[str, set[str]]:
    """clusterclip's sub-packages (and top-level modules) -> those they import, lazy imports included."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(rel[:-1] if rel[-1] == "__init__" else rel)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        group = module.split(".")[1] if "." in module else ""
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t.startswith("clusterclip.") and t.split(".")[1] != group:
                    graph.setdefault(group, set()).add(t.split(".")[1])
    return graph


def _reaches(graph: dict[str, set[str]], a: str, b: str) -> bool:
    seen, todo = set(), [a]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt == b:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def test_no_step_engine_import_cycle():
    graph = _import_graph()
    for step in ("embed", "cluster", "schedule"):
        assert _reaches(graph, step, "engines"), f"{step} runs its work through clusterclip.engines"
        assert not _reaches(graph, "engines", step), f"engines/ must get what it needs of {step} as arguments"


# --------------------------------------------------------------------------- a toy engine: one module, one line
TOY_ENGINE = '''
from clusterclip.engines import Engine

CALLS = []


class ToyEngine(Engine):
    """Every task in this process, but the work cut for three slots and the tasks run last to first."""

    name = "toy"

    def slots(self, settings):
        return 3

    def map(self, settings, fn, args, *, shared=(), sizes=None, bar=None, resources=None):
        tasks = list(args)
        CALLS.append((fn.__name__, len(tasks)))
        for i in reversed(range(len(tasks))):
            result = fn(*shared, *tasks[i], progress=None)
            if bar is not None and sizes is not None:
                bar.update(sizes[i])
            yield i, result


ENGINE = ToyEngine()
'''


def test_a_new_engine_is_one_module_and_one_registry_line(tmp_path, monkeypatch, embedded, clustered, demo_tokenizer):
    """Any engine that runs the steps' tasks, cut for its slots and finished in any order, gives the same bytes."""
    from clusterclip import engines
    from clusterclip.cluster import cluster_embeddings
    from clusterclip.schedule import schedule_corpus

    (tmp_path / "toy_engine.py").write_text(TOY_ENGINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(engines.ENGINES, "modules", {**engines.ENGINES.modules})  # undone after the test
    engines.register("toy", "toy_engine")  # the one registry line
    cluster_embeddings(embedded, tmp_path / "cl", k=5, seed=0, engine="toy", progress=False)
    calls = sys.modules["toy_engine"].CALLS
    assert [name for name, _ in calls] == ["verify_task", "assign_task"]
    for name in ("assignments.parquet", "centroids.npy", "clusters.parquet", "manifest.json"):
        assert (tmp_path / "cl" / name).read_bytes() == (clustered / name).read_bytes(), name  # not the result
    calls.clear()
    options = dict(tokenizer=str(demo_tokenizer), epochs=2, shard_tokens=300, formats=("bin", "parquet"),
                   progress=False)
    schedule_corpus(embedded, clustered, tmp_path / "local", token_cache=str(tmp_path / "cache-1"), **options)
    schedule_corpus(embedded, clustered, tmp_path / "toy", engine="toy", token_cache=str(tmp_path / "cache-2"),
                    **options)  # a cache of its own: the toy engine's tasks tokenize (and build the same store)
    assert {name for name, _ in calls} == {"tokenize_range", "copy_task", "write_shard_task"}
    assert dict(calls)["write_shard_task"] > 1  # several shards, written last to first
    assert tree_bytes(tmp_path / "toy") == tree_bytes(tmp_path / "local")


def test_an_unknown_engine_is_one_line():
    from clusterclip.cluster import ClusterSettings
    from clusterclip.errors import InputError

    with pytest.raises(InputError, match=r"--engine 'nope': unknown; choose one of local, ray"):
        ClusterSettings(k=2, engine="nope").validate()


def test_embedding_rows_are_a_picklable_slice(embedded):
    import pickle

    from clusterclip.embed import EmbedDir

    store = EmbedDir(embedded).store()
    store.read(0, 1)  # a part mapped: still picklable, reopened where it lands
    rows = pickle.loads(pickle.dumps(store.rows(3, store.n - 2)))
    assert len(rows) == store.n - 5
    assert np.array_equal(rows.read(0, len(rows)), store.read(3, store.n - 2))


# --------------------------------------------------------------------------- a toy format: one module, one line
TOY_FORMAT = '''
import numpy as np

from clusterclip.shards.raw import RawFormat


class ToyFormat(RawFormat):
    """raw under another name and directory: uint32 tokens, toy/part_000000.tok..."""

    name = "toy"
    read_by = "nothing but this test"

    def files(self, k):
        return [self.dir / f"part_{k:06d}.tok"]

    pattern = "part_*.tok"


FORMAT = ToyFormat
'''


def test_a_new_format_is_one_module_and_one_registry_line(tmp_path, monkeypatch):
    from clusterclip import shards
    from clusterclip.shards import read_stream, verify_shards, write_shards
    from clusterclip.tokens.store import TokenStore

    (tmp_path / "toy_format.py").write_text(TOY_FORMAT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(shards.FORMATS, "modules", {**shards.FORMATS.modules})  # undone after the test
    shards.FORMATS.register("toy", "toy_format")  # the one registry line
    store = _tiny_store(tmp_path / "store", TokenStore)
    order = np.array([0, 2, 1, 2], dtype=np.int64)
    zeros = np.zeros(len(order), np.int32)
    index = write_shards(order, zeros, zeros, store, tmp_path / "out", formats=("toy", "raw"), shard_tokens=6,
                         eos_id=0, vocab_size=100, progress=False)
    assert sorted((tmp_path / "out" / "toy").glob("part_*.tok")) and index["formats"] == ["toy", "raw"]
    assert verify_shards(tmp_path / "out") == []
    toy, raw = read_stream(tmp_path / "out", "toy", index), read_stream(tmp_path / "out", "raw", index)
    assert np.array_equal(toy[0], raw[0]) and np.array_equal(toy[1], raw[1])


def _tiny_store(path: Path, store_cls):
    """A token store of 3 documents (ids 1..), written as build_token_store would."""
    from clusterclip.tokens.build import build_token_store

    class Tok:
        vocab_size = 100

        def encode_batch(self, texts):
            return [[1 + (ord(c) % 90) for c in t] for t in texts]

        def describe(self):
            return {"toy": True}

    store = build_token_store(iter([(0, "abc"), (1, "de"), (2, "fghij")]), 3, Tok(), path, progress=False)
    assert isinstance(store, store_cls)
    return store


# --------------------------------------------------------------------------- a toy step: one module, one line
TOY_STEP = '''
from dataclasses import dataclass

import numpy as np

from clusterclip.artifacts import save_npy_atomic
from clusterclip.embed import EmbedDir
from clusterclip.settings import Settings, setting
from clusterclip.steps import Outcome, Step


@dataclass(frozen=True)
class LengthsSettings(Settings):
    step = "lengths"

    bins: int = setting(4, flag="--bins", kind=int, min=1, help="Bins of the histogram.")


class LengthsStep(Step[LengthsSettings]):
    """A histogram of the documents' lengths (characters) of an embed directory."""

    name = "lengths"
    settings_class = LengthsSettings

    def __init__(self, emb: EmbedDir, settings: LengthsSettings, **kwargs):
        super().__init__(settings, **kwargs)
        self.emb = emb

    def upstream(self):
        return {"embed": self.emb}  # recorded in the manifest's inputs; never written

    def run(self, run):
        chars = self.emb.docs_table(["n_chars"]).column(0).to_numpy()  # through the owner: digest checked
        counts, _ = np.histogram(chars, bins=self.settings.bins)
        save_npy_atomic(run.build / "histogram.npy", counts)
        return Outcome(["histogram.npy"], {"documents": int(counts.sum())}, processed=len(chars))

    def summary(self, result):
        return f"lengths: {result.statistics['documents']} documents -> {result.out}"


STEP = LengthsStep
'''


def test_a_new_step_is_one_module_and_one_registry_line(tmp_path, monkeypatch, embedded):
    from clusterclip.artifacts import read_manifest
    from clusterclip.embed import EmbedDir
    from clusterclip.errors import MismatchError
    from clusterclip.steps import STEPS, preview, run_step
    from clusterclip.verify import verify_directory

    (tmp_path / "toy_step.py").write_text(TOY_STEP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(STEPS, "modules", {**STEPS.modules})  # undone after the test
    STEPS.register("lengths", "toy_step")  # the one registry line
    step_class = STEPS["lengths"]
    emb = EmbedDir(embedded)

    assert preview(step_class(emb, step_class.settings_class(bins=3)), tmp_path / "out").state == "fresh"
    assert not (tmp_path / "out").exists()  # a preview writes nothing
    first = run_step(step_class(emb, step_class.settings_class(bins=3)), tmp_path / "out")
    assert preview(step_class(emb, step_class.settings_class(bins=3)), tmp_path / "out").state == "done"
    assert first.state == "fresh" and first.summary == f"lengths: {emb.n_docs} documents -> {tmp_path / 'out'}"
    manifest = read_manifest(tmp_path / "out", "lengths")  # the driver wrote the manifest, checked as any other
    assert manifest["inputs"] == {"embed": emb.record()} and manifest["settings"] == {"bins": 3}
    assert len(np.load(tmp_path / "out" / "histogram.npy")) == 3
    assert verify_directory(tmp_path / "out")[1] == []
    again = run_step(step_class(emb, step_class.settings_class(bins=3)), tmp_path / "out")
    assert again.state == "done" and "already done" in again.summary
    for refused in (run_step, preview):  # refused before anything is written, naming what differs
        with pytest.raises(MismatchError, match="other settings: bins 3 -> 5; pass --overwrite"):
            refused(step_class(emb, step_class.settings_class(bins=5)), tmp_path / "out")
    assert run_step(step_class(emb, step_class.settings_class(bins=5)), tmp_path / "out", overwrite=True).state == "fresh"
    interrupted = step_class(emb, step_class.settings_class(bins=7))
    monkeypatch.setattr(interrupted, "run", lambda run: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run_step(interrupted, tmp_path / "out", overwrite=True)
    assert read_manifest(tmp_path / "out", "lengths")["settings"] == {"bins": 5}  # the old output is still there
    again = step_class(emb, step_class.settings_class(bins=7))
    assert preview(again, tmp_path / "out", overwrite=True).state == "resume"
    assert run_step(again, tmp_path / "out", overwrite=True).state == "resume"
