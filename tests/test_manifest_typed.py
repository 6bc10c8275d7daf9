"""``manifest.json`` as data (issue 23 item 2): :class:`Manifest` is what the driver writes and the owners read.

Properties: every manifest the driver can build is the JSON of a :class:`Manifest`, is accepted by
``check_manifest`` and reads back to the same object and the same bytes, whatever its settings,
statistics, accounting and step-specific keys; real outputs (embed, cluster) read back byte for
byte; a manifest of a layout this version does not read is refused in one line.

Each step's statistics are data too (``EmbedStats``, ``ClusterStats``, ``ScheduleStats``, ``ProxyStats``):
whatever keys a manifest holds, the dataclass reads them and writes back the very same dict (so the
manifest bytes do not change), and a manifest in the shape an earlier clusterclip wrote (0.2.0) reads
with the keys added since as None.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterclip.artifacts import build_manifest
from clusterclip.artifacts.files import dumps_json
from clusterclip.artifacts.manifest import READABLE_VERSIONS, Manifest, Stats, check_manifest
from clusterclip.cluster.directory import ClusterDir, ClusterStats
from clusterclip.embed.directory import EmbedDir, EmbedStats
from clusterclip.errors import ClusterClipError, IntegrityError
from clusterclip.proxy.runfiles import ProxyStats
from clusterclip.schedule.directory import ScheduleDir, ScheduleStats

from helpers import REPO

_names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
_scalars = st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=20)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_names, inner, max_size=4),
                     max_leaves=12)
_objects = st.dictionaries(_names, _json, max_size=5)
_records = st.lists(st.builds(lambda p, b, h: {"path": p, "bytes": b, "sha256": h}, _names,
                              st.integers(0, 2**40), st.text("0123456789abcdef", min_size=64, max_size=64)),
                    max_size=5, unique_by=lambda r: r["path"])
# a step's own top-level keys: any name but the manifest's fields
_extra = st.dictionaries(_names.filter(lambda k: k not in {"tool", "manifest_version", "version", "step", "settings",
                                                           "inputs", "outputs", "statistics", "accounting",
                                                           "checksum"}), _json, max_size=3)


@settings(max_examples=200, deadline=None)
@given(step=st.sampled_from(["embed", "cluster", "schedule", "report"]), settings_=_objects, inputs=_objects,
       outputs=_records, statistics=_objects, accounting=st.none() | _objects, extra=_extra)
def test_every_built_manifest_is_a_manifest_and_reads_back_to_the_same_bytes(step, settings_, inputs, outputs,
                                                                             statistics, accounting, extra):
    built = build_manifest(step, settings_, inputs, outputs, statistics, accounting=accounting, extra=extra)
    typed = Manifest(step, settings_, inputs, outputs, statistics, accounting, extra)
    assert typed.to_json() == built
    parsed = json.loads(dumps_json(built))  # as a consumer reads the file
    check_manifest(parsed, Path("m.json"), step)
    back = Manifest.from_json(parsed)
    assert dumps_json(back.to_json()) == dumps_json(built)
    assert back.accounting == accounting and back.extra == extra
    assert back.outputs == sorted(outputs, key=lambda r: r["path"])
    for key, value in inputs.items():
        assert back.upstream(key) == (value if isinstance(value, dict) else {})
    assert back.upstream("no such input") == {}


def test_real_outputs_read_back_byte_for_byte(embedded, clustered):
    """The owners' ``info`` is the manifest on disk, and the cluster names its embed input through it."""
    emb, cl = EmbedDir(embedded), ClusterDir(clustered)
    for owner in (emb, cl):
        on_disk = (owner.path / "manifest.json").read_text("utf-8")
        assert dumps_json(owner.info.to_json()) == on_disk
        assert owner.info.step == owner.step and owner.info.manifest_version in READABLE_VERSIONS
        assert owner.stats.to_json() == owner.statistics  # the step's statistics, as written
    assert cl.info.upstream("embed") == emb.record()
    assert emb.info.counted("documents") == emb.n_docs


@pytest.mark.parametrize("version", [1, 3, None, "2"])
def test_a_layout_this_version_does_not_read_is_refused_in_one_line(version):
    built = build_manifest("embed", {}, {}, [], {})
    built["manifest_version"] = version
    with pytest.raises(ClusterClipError) as e:
        check_manifest(built, Path("m.json"), "embed")
    assert "\n" not in str(e.value) and "manifest_version" in str(e.value)


STATS = (EmbedStats, ClusterStats, ScheduleStats, ProxyStats)


def _fields(cls: type[Stats]) -> tuple[list[str], list[str]]:
    """(keys every manifest has, keys that may be absent) of a statistics class."""
    import dataclasses

    named = [f for f in dataclasses.fields(cls) if f.name not in ("other", "present")]
    required = [f.name for f in named if f.default is dataclasses.MISSING]
    return required, [f.name for f in named if f.default is not dataclasses.MISSING]


@st.composite
def _statistics(draw, cls: type[Stats]) -> dict:
    """A statistics dict as some clusterclip may have written it: every required key, any subset of the optional
    ones (any value, null included), and keys the class does not name."""
    required, optional = _fields(cls)
    data = {k: draw(_json) for k in required}
    data.update({k: draw(_json) for k in optional if draw(st.booleans())})
    data.update(draw(st.dictionaries(_names.filter(lambda k: k not in required + optional), _json, max_size=3)))
    return data


@settings(max_examples=100, deadline=None)
@given(data=st.data(), cls=st.sampled_from(STATS))
def test_statistics_read_as_data_write_back_the_same_dict(data, cls):
    stats = data.draw(_statistics(cls))
    typed = cls.from_json(stats)
    assert typed.to_json() == stats  # the same manifest bytes (the canonical JSON sorts the keys)
    required, optional = _fields(cls)
    assert all(getattr(typed, k) == stats[k] for k in required)
    assert all(getattr(typed, k) == stats.get(k) for k in optional)  # absent: None
    assert cls.from_json(typed.to_json()) == typed
    for k in required:  # a key every version has, missing: one line naming it (from the owner)
        with pytest.raises(KeyError, match=k):
            cls.from_json({key: v for key, v in stats.items() if key != k})


def test_a_step_writes_its_written_fields_every_time_and_the_others_when_set():
    bare = ClusterStats(n_docs=3, k=2).to_json()
    assert bare["train_objective"] is None and bare["sizes"] is None  # written every time, null included
    assert "level2" not in bare and "assign_only" not in bare  # only with --levels 2 / --assign-only
    assert ClusterStats(n_docs=3, k=2, level2={"k": 1}).to_json()["level2"] == {"k": 1}
    assert "merged_partitions" not in EmbedStats(n_docs=1, dim=2).to_json()


def test_outputs_of_clusterclip_0_2_0_read_as_typed_statistics():
    """The outputs an earlier clusterclip wrote (tests/data/upgrade-0.2.0: its statistics lack the keys added
    since): the owners read them, those keys are None, and the report reads their schedule."""
    from clusterclip.report import inputs

    fixture = REPO / "tests" / "data" / "upgrade-0.2.0"
    emb, cl, sched = EmbedDir(fixture / "emb"), ClusterDir(fixture / "cl"), ScheduleDir(fixture / "sched")
    for owner in (emb, cl, sched):
        assert owner.info.version == "0.2.0" and owner.stats.to_json() == owner.statistics
    assert emb.stats.n_docs == emb.n_docs > 0 and emb.stats.merged_partitions is None and emb.lineage == []
    assert cl.stats.k == cl.k and cl.stats.level2 is None and cl.stats.assign_only is None
    assert sched.stats.samples == sched.n_samples and sched.stats.tokens is None and sched.stats.budget is None
    info = inputs.read_schedule(sched.path, inputs.read_clusters(cl.path))
    assert info.samples == sched.n_samples and not info.has_tokens and info.cluster_token_budget is None
    assert sum(info.cluster_samples) == info.samples


def test_a_manifest_whose_statistics_lack_a_key_is_refused_in_one_line(embedded, tmp_path):
    import shutil

    from clusterclip.artifacts.manifest import _checksum

    copy = tmp_path / "emb"
    shutil.copytree(embedded, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["statistics"]["dim"]
    manifest["checksum"] = _checksum(manifest)
    (copy / "manifest.json").write_text(dumps_json(manifest))
    with pytest.raises(IntegrityError) as e:
        EmbedDir(copy)
    assert "\n" not in str(e.value) and "'dim'" in str(e.value) and "rerun `clusterclip embed`" in str(e.value)


def test_messages_describe_a_directory_from_its_steps_statistics_class():
    """``describe`` (the text of a wrong-directory refusal) reads the statistics through the class of the step that
    wrote them (``Step.stats_class``): the 0.2.0 outputs as before, ``?`` for statistics not as written."""
    from clusterclip.artifacts.manifest import describe

    fixture = REPO / "tests" / "data" / "upgrade-0.2.0"
    emb, cl, sched = EmbedDir(fixture / "emb"), ClusterDir(fixture / "cl"), ScheduleDir(fixture / "sched")
    assert describe(emb.manifest) == f"a `clusterclip embed` directory ({emb.n_docs} documents, dim {emb.dim})"
    assert describe(cl.manifest) == f"a `clusterclip cluster` directory ({cl.n_docs} documents in {cl.k} clusters)"
    dry = ", a dry run: order only, no shards" if sched.settings.get("dry_run") else ""
    assert describe(sched.manifest) == f"a `clusterclip schedule` directory ({sched.stats.samples} samples{dry})"
    assert describe({**sched.manifest, "settings": {"dry_run": True}}).endswith("samples, a dry run: order only, no shards)")
    assert describe({**emb.manifest, "statistics": {"dim": 3}}) == "a `clusterclip embed` directory (?)"
    assert describe({"step": "holdout", "statistics": {}}) == "a `clusterclip holdout` directory ()"
    assert describe({"step": "nonsense"}) == "a `clusterclip nonsense` directory (?)"
