"""``manifest.json`` as data (issue 23 item 2): :class:`Manifest` is what the driver writes and the owners read.

Properties: every manifest the driver can build is the JSON of a :class:`Manifest`, is accepted by
``check_manifest`` and reads back to the same object and the same bytes, whatever its settings,
statistics, accounting and step-specific keys; real outputs (embed, cluster) read back byte for
byte; a manifest of a layout this version does not read is refused in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clusterclip.artifacts import build_manifest
from clusterclip.artifacts.files import dumps_json
from clusterclip.artifacts.manifest import READABLE_VERSIONS, Manifest, check_manifest
from clusterclip.cluster.directory import ClusterDir
from clusterclip.embed.directory import EmbedDir
from clusterclip.errors import ClusterClipError

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
    assert cl.info.upstream("embed") == emb.record()
    assert emb.info.counted("documents") == emb.n_docs


@pytest.mark.parametrize("version", [1, 3, None, "2"])
def test_a_layout_this_version_does_not_read_is_refused_in_one_line(version):
    built = build_manifest("embed", {}, {}, [], {})
    built["manifest_version"] = version
    with pytest.raises(ClusterClipError) as e:
        check_manifest(built, Path("m.json"), "embed")
    assert "\n" not in str(e.value) and "manifest_version" in str(e.value)
