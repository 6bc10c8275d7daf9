"""``scripts/bench_gpu.sh`` on a machine without CUDA: it still succeeds, skips every GPU part with a
message saying why, and writes one JSON that records each part as skipped (on a CUDA machine the
same command fills those parts with figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.slow
def test_bench_gpu_skips_the_gpu_parts_on_cpu_with_a_clear_message(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: this test is about the CPU fallback")
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHON": sys.executable, "BENCH_GPU_QUICK": "1"}
    done = subprocess.run(["bash", str(REPO / "scripts" / "bench_gpu.sh"), str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert figures["gpu"] is None and figures["command"].startswith("bash scripts/bench_gpu.sh")
    assert set(figures["parts"]) == {"embed", "kmeans", "proxy"}
    reasons = {name: part["skipped"] for name, part in figures["parts"].items()}
    assert "torch.cuda.is_available() is False" in reasons["embed"]
    assert "faiss has no GPU" in reasons["kmeans"] and "faiss-gpu" in reasons["kmeans"]
    assert "clusterclip/proxy" in reasons["proxy"] or "no CUDA GPU" in reasons["proxy"]
    for name, reason in reasons.items():
        assert f"bench_gpu: {name}: skipped: {reason}" in done.stderr
    assert "embed: skipped, kmeans: skipped, proxy: skipped" in done.stdout
