"""Object storage (``s3://``, ``gs://``...) is refused in one line wherever a path is given: corpus inputs,
input directories and ``--out`` (docs/SCALE.md: what nodes must share). Nothing is created locally: a
``pathlib.Path`` would turn ``s3://bucket/x`` into a local directory ``s3:/bucket/x``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterclip.errors import InputError
from clusterclip.remote import remote_scheme

from helpers import assert_one_line_error, invoke

SCHEMES = ["s3", "gs", "gcs", "az", "abfss", "hdfs", "hf", "https"]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_out_on_object_storage_is_one_line_and_nothing_is_created(in_tmp, embedded, clustered, demo_tokenizer,
                                                                  small_corpus, scheme):
    out = f"{scheme}://bucket/run/out"
    commands = {
        "embed": ["embed", small_corpus, "--out", out],
        "cluster": ["cluster", embedded, "--out", out, "--k", 3],
        "schedule": ["schedule", embedded, clustered, "--out", out, "--tokenizer", demo_tokenizer],
        "report": ["report", embedded, clustered, "--out", out],
    }
    for name, args in commands.items():
        code, output = invoke(args)
        assert_one_line_error(code, output, f"--out {out}: object storage ({scheme}://)", "mount")
        assert os.listdir(in_tmp) == [], name  # no s3:/bucket/... made here


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_input_directories_on_object_storage_are_one_line(in_tmp, embedded, scheme, tmp_path):
    remote = f"{scheme}://bucket/emb"
    for args in (["cluster", remote, "--out", tmp_path / "cl", "--k", 3],
                 ["schedule", embedded, f"{scheme}://bucket/cl", "--out", tmp_path / "s", "--tokenizer", "t.json"],
                 ["verify", remote]):
        code, output = invoke(args)
        assert_one_line_error(code, output, f"{scheme}://bucket/", "remote inputs", "copy")
    assert os.listdir(in_tmp) == []



@pytest.mark.parametrize("scheme", ["s3", "hf", "https"])
def test_a_remote_tokenizer_or_model_is_one_line_naming_the_option(in_tmp, embedded, clustered, small_corpus,
                                                                   scheme, tmp_path):
    tok, model = f"{scheme}://bucket/tok/tokenizer.json", f"{scheme}://bucket/models/minilm"
    code, output = invoke(["schedule", embedded, clustered, "--out", tmp_path / "s", "--tokenizer", tok])
    assert_one_line_error(code, output, f"--tokenizer {tok}: remote files ({scheme}://)", "download", "hub name")
    code, output = invoke(["embed", small_corpus, "--out", tmp_path / "e", "--model", model])
    assert_one_line_error(code, output, f"--model {model}: remote files ({scheme}://)", "download", "hub name")
    assert os.listdir(in_tmp) == [] and not (tmp_path / "s").exists() and not (tmp_path / "e").exists()

def test_library_paths_are_refused_too_even_as_pathlib_paths(in_tmp, embedded):
    from clusterclip.cluster import cluster_embeddings

    for out in ("s3://bucket/cl", Path("s3://bucket/cl")):  # Path() leaves s3:/bucket/cl
        with pytest.raises(InputError, match="object storage"):
            cluster_embeddings(embedded, out, k=3)
    assert os.listdir(in_tmp) == []


@given(scheme=st.sampled_from(SCHEMES), rest=st.from_regex(r"[a-z0-9][a-z0-9._/-]{0,20}", fullmatch=True))
def test_remote_scheme_finds_urls_as_typed_and_as_path_leaves_them(scheme, rest):
    assert remote_scheme(f"{scheme}://{rest}") == scheme
    assert remote_scheme(Path(f"{scheme}://{rest}")) == scheme


@given(name=st.from_regex(r"[A-Za-z0-9._-]{1,12}(/[A-Za-z0-9._:-]{1,12}){0,3}", fullmatch=True))
def test_local_paths_are_never_taken_for_remote(name):
    assert remote_scheme(name) is None
    assert remote_scheme(f"/{name}") is None
    assert remote_scheme(Path("./", name)) is None
