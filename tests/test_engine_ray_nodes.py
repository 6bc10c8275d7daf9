"""``--engine ray`` past one machine: embed, cluster and schedule on a simulated 3-node Ray cluster
(:class:`ray.cluster_utils.Cluster`: a head and two worker nodes, each a raylet with its own CPU
resource and object store, here on one machine) run their tasks on more than one node and write the
local engine's directories: cluster and schedule byte-identical, embed's ``docs.parquet`` and
manifest identical and its embeddings within 1e-5 (docs/SCALE.md).

The nodes have one logical CPU each (the embed actor takes half of one), so the cluster fits this
2-core machine and no node can take every task. Every test here has a timeout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import load_script, run_cli, stdlib_docs, tree_bytes, write_jsonl, write_parquet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

NODES = 3
EMBED_ARGS = ["--max-length", 16, "--id-column", "id", "--part-docs", 12, "--window-docs", 8, "--dtype", "float32"]


@pytest.fixture(scope="module")
def nodes():
    """A 3-node Ray cluster on this machine, joined by this process (the driver); the node ids."""
    import ray
    from ray.cluster_utils import Cluster

    store = 80 * 2**20
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store,
                                                             "include_dashboard": False})
    try:
        for _ in range(NODES - 1):
            cluster.add_node(num_cpus=1, object_store_memory=store)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
            assert len(ids) == NODES
            yield ids
        finally:
            ray.shutdown()
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def work(tmp_path_factory, nodes) -> Path:
    """Two corpus files, a tokenizer, and the local engine's embed + cluster + schedule directories."""
    root = tmp_path_factory.mktemp("nodes")
    docs = stdlib_docs(72)
    write_jsonl(root / "corpus" / "a.jsonl", docs[:40])
    write_parquet(root / "corpus" / "b.parquet", {"text": [d["text"] for d in docs[40:]],
                                                  "id": [d["id"] for d in docs[40:]]}, row_group_size=5)
    tok = load_script("train_demo_tokenizer").train(write_jsonl(root / "tok" / "train.jsonl", docs), vocab_size=500)
    tok.save(str(root / "tokenizer.json"))
    run_cli(["embed", root / "corpus", "--out", root / "local" / "emb", *EMBED_ARGS])
    run_cli(["cluster", root / "local" / "emb", "--out", root / "local" / "cl", "--k", 3])
    run_cli(schedule_args(root, root / "local", root / "local" / "sched"))
    return root


def schedule_args(root: Path, inputs: Path, out: Path) -> list:
    return ["schedule", inputs / "emb", inputs / "cl", "--out", out, "--tokenizer", root / "tokenizer.json",
            "--epochs", 2, "--shard-tokens", 150, "--format", "bin,datatrove"]


def on_ray(args: list) -> set[str]:
    """Run ``clusterclip ARGS --engine ray`` on the cluster; the nodes its tasks and actors ran on."""
    from clusterclip.engines import ray_session

    ray_session.TASK_NODES.clear()
    run_cli([*args, "--engine", "ray"])
    return set(ray_session.TASK_NODES)


def test_embed_cluster_schedule_run_on_several_nodes_and_write_the_local_directories(work, nodes):
    ray_dir, local = work / "ray", work / "local"
    used = {"embed": on_ray(["embed", work / "corpus", "--out", ray_dir / "emb", *EMBED_ARGS]),
            "cluster": on_ray(["cluster", local / "emb", "--out", ray_dir / "cl", "--k", 3]),
            "schedule": on_ray(schedule_args(work, local, ray_dir / "sched"))}
    for step, where in used.items():
        assert where <= nodes, step
        assert len(where) >= 2, f"{step}: every task ran on one node ({where})"

    emb_local, emb_ray = tree_bytes(local / "emb"), tree_bytes(ray_dir / "emb")
    assert sorted(emb_ray) == sorted(emb_local)
    assert emb_ray["docs.parquet"] == emb_local["docs.parquet"]
    m_local, m_ray = json.loads(emb_local["manifest.json"]), json.loads(emb_ray["manifest.json"])
    for key in ("settings", "statistics", "accounting", "inputs"):
        assert m_ray[key] == m_local[key], key
    np.testing.assert_allclose(_embeddings(ray_dir / "emb"), _embeddings(local / "emb"), atol=1e-5)
    assert tree_bytes(ray_dir / "cl") == tree_bytes(local / "cl")
    assert tree_bytes(ray_dir / "sched") == tree_bytes(local / "sched")


def _embeddings(path: Path) -> np.ndarray:
    return np.concatenate([np.load(p) for p in sorted(Path(path).glob("embeddings-*.npy"))])
