"""The ``cluster`` step: spherical k-means artifacts, exactness, determinism, resume and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import clusterclip.cluster.step as cluster_step
from clusterclip.cluster import ClusterDir, assign, cluster_embeddings
from clusterclip.cluster.kmeans import gpu_available, greedy_kmeanspp, greedy_kmeanspp_rows, train_spherical_kmeans
from clusterclip.embed import EmbedDir

from embed_fixtures import blobs, normalise, write_embed_dir
from helpers import assert_one_line_error, invoke

OUTPUTS = ("centroids.npy", "assignments.parquet", "clusters.parquet", "manifest.json")


class _Result:
    def __init__(self, code, output):
        self.exit_code, self.output = code, output


def cli(*args):
    return _Result(*invoke(list(args)))


def ok(*args):
    r = cli(*args)
    assert r.exit_code == 0, r.output
    return r


def fails(*args) -> str:
    """Run, expect a one-line user error (no traceback); return the error line."""
    return assert_one_line_error(*invoke(list(args)))


@pytest.fixture(scope="module")
def data():
    x, truth = blobs(3000, 6, 32, noise=0.3, seed=3)
    return x, truth


@pytest.fixture(scope="module")
def emb(tmp_path_factory, data) -> Path:
    return write_embed_dir(tmp_path_factory.mktemp("emb") / "emb", data[0], parts=3)


@pytest.fixture(scope="module")
def clustered(tmp_path_factory, emb) -> Path:
    out = tmp_path_factory.mktemp("cl") / "cl"
    ok("cluster", emb, "--out", out, "--k", 12, "--seed", 0)
    return out


def read(out: Path):
    a = pq.read_table(out / "assignments.parquet")
    c = pq.read_table(out / "clusters.parquet")
    cent = np.load(out / "centroids.npy")
    man = json.loads((out / "manifest.json").read_text())
    return a, c, cent, man


# --------------------------------------------------------------------------- artifacts
def test_artifacts_follow_the_contract(emb, clustered, data):
    x = data[0]
    a, c, cent, man = read(clustered)
    assert sorted(p.name for p in clustered.iterdir()) == sorted(OUTPUTS + (".clusterclip",))
    assert not (clustered / ".clusterclip" / "build").exists()  # no job/state files left
    assert a.schema.field("doc_id").type == pa.int64()
    assert a.schema.field("cluster").type == pa.int32()
    assert a.schema.field("similarity").type == pa.float32()
    assert c.schema.field("cluster").type == pa.int32()
    assert c.schema.field("size").type == pa.int64()
    assert c.schema.field("mean_similarity").type == pa.float32()
    assert cent.dtype == np.float32 and cent.shape == (12, 32)

    doc_id = a.column("doc_id").to_numpy()
    labels = a.column("cluster").to_numpy()
    sim = a.column("similarity").to_numpy()
    assert np.array_equal(doc_id, np.arange(len(x)))  # one row per doc, ascending
    assert labels.min() >= 0 and labels.max() < 12
    # spherical: unit-norm centroids; similarity = dot product with the own centroid = the best one
    np.testing.assert_allclose(np.linalg.norm(cent, axis=1), 1.0, atol=1e-5)
    dots = x @ cent.T
    np.testing.assert_allclose(sim, dots[np.arange(len(x)), labels], atol=1e-6)
    np.testing.assert_allclose(sim, dots.max(axis=1), atol=1e-5)

    sizes = np.bincount(labels, minlength=12)
    assert c.column("cluster").to_pylist() == list(range(12))
    assert np.array_equal(c.column("size").to_numpy(), sizes)
    means = np.bincount(labels, weights=sim, minlength=12) / sizes
    np.testing.assert_allclose(c.column("mean_similarity").to_numpy(), means, rtol=1e-5)

    assert man["step"] == "cluster"
    assert man["settings"]["k"] == 12 and man["settings"]["seed"] == 0
    assert man["settings"]["max_train_points"] == 256 * 12
    assert man["settings"]["init"] == "greedy-kmeans++"  # the default
    assert man["inputs"]["embed"]["manifest_sha256"]
    st = man["statistics"]
    assert st["n_docs"] == len(x) and st["k"] == 12 and st["empty_clusters"] == 0
    assert st["train_points"] == len(x)  # 3000 < 256 * 12: all documents
    assert st["init_points"] == 32 * 12  # greedy k-means++ seeds on a sub-sample
    assert st["mean_similarity"] == pytest.approx(float(sim.mean()), abs=1e-5)
    assert st["sizes"]["min"] == sizes.min() and st["sizes"]["max"] == sizes.max()
    assert 0 <= st["sizes"]["gini"] < 1
    assert {o["path"] for o in man["outputs"]} == set(OUTPUTS) - {"manifest.json"}


def test_the_cluster_directory_owner_reads_the_output(emb, clustered):
    cl = ClusterDir(clustered, verify=True)
    cl.check_belongs_to(EmbedDir(emb))
    labels = cl.labels()
    assert cl.k == 12 and len(labels) == 3000 and labels.max() < 12
    assert cl.centroids().shape == (12, 32) and cl.clusters_table().num_rows == 12


# --------------------------------------------------------------------------- exactness
def test_chunked_assignment_equals_one_shot(tmp_path):
    x, _ = blobs(10_003, 7, 24, noise=0.8, seed=5)
    store = EmbedDir(write_embed_dir(tmp_path / "e", x, parts=4)).store()
    cent = train_spherical_kmeans(x, 7, iters=5, seed=1)
    one_lab, one_sim = assign(x, cent, chunk_rows=10**9)
    for rows in (1, 4096, 5000, 8192):
        lab, sim = assign(store, cent, chunk_rows=rows)
        assert lab.dtype == np.int32 and sim.dtype == np.float32
        assert np.array_equal(lab, one_lab) and np.array_equal(sim, one_sim)
    np.testing.assert_allclose(one_sim, (x @ cent.T).max(axis=1), atol=1e-6)


def test_chunk_rows_does_not_change_the_files(tmp_path):
    x, _ = blobs(9000, 5, 16, noise=0.8, seed=2)
    e = write_embed_dir(tmp_path / "e", x, parts=2)
    ok("cluster", e, "--out", tmp_path / "a", "--k", 5, "--chunk-rows", 100)
    ok("cluster", e, "--out", tmp_path / "b", "--k", 5, "--chunk-rows", 1_000_000)
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_recovers_well_separated_clusters(tmp_path):
    # 6 random directions + small noise, over-clustered as ClusterClip does (k >> topics):
    # every cluster found lies inside one true cluster, and every true cluster is found
    x, truth = blobs(4000, 6, 48, noise=0.1, seed=11)
    e = write_embed_dir(tmp_path / "e", x)
    ok("cluster", e, "--out", tmp_path / "cl", "--k", 48)
    labels = pq.read_table(tmp_path / "cl" / "assignments.parquet").column("cluster").to_numpy()
    for c in np.unique(labels):
        assert len(np.unique(truth[labels == c])) == 1
    assert len(np.unique(truth)) == 6


def test_recovers_clusters_with_k_equal_to_the_truth():
    # random init (as in the paper) can merge two true clusters; with this seed it does not,
    # and then the partition must be the true one exactly
    x, truth = blobs(2000, 4, 32, noise=0.2, seed=0)
    best = None
    for seed in range(8):
        cent = train_spherical_kmeans(x, 4, iters=20, seed=seed)
        lab, sim = assign(x, cent)
        if best is None or sim.sum() > best[1].sum():
            best = (lab, sim)
    lab = best[0]
    contingency = np.zeros((4, 4), dtype=int)
    np.add.at(contingency, (lab, truth), 1)
    assert (contingency > 0).sum() == 4  # a permutation: adjusted agreement 1


# --------------------------------------------------------------------------- initialisation
def uneven_blobs(seed=4):
    """30 tight topics with heavy-tailed sizes (5 to 310 documents)."""
    rng = np.random.default_rng(0)
    sizes = np.maximum(5, rng.lognormal(0.0, 1.5, 30) * 40).astype(int)
    x, truth = blobs(int(sizes.sum()), 30, 32, noise=0.3, seed=seed, sizes=list(sizes))
    return x, truth


def test_greedy_kmeanspp_is_deterministic_distinct_unit_rows_of_the_data():
    x, _ = uneven_blobs()
    rows = greedy_kmeanspp_rows(x, 30, seed=5)
    assert np.array_equal(rows, greedy_kmeanspp_rows(x, 30, seed=5))
    assert not np.array_equal(rows, greedy_kmeanspp_rows(x, 30, seed=6))
    assert rows.dtype == np.int64 and len(np.unique(rows)) == 30 and rows.min() >= 0 and rows.max() < len(x)

    for max_points in (None, 200, 10**9):  # on a sub-sample (32 * k = 960 of 1917 rows), 200, all
        cent, used = greedy_kmeanspp(x, 30, seed=5, max_points=max_points)
        again, _ = greedy_kmeanspp(x, 30, seed=5, max_points=max_points)
        assert cent.dtype == np.float32 and cent.shape == (30, 32)
        assert cent.tobytes() == again.tobytes()
        assert used == {None: 32 * 30, 200: 200}.get(max_points, len(x))
        np.testing.assert_allclose(np.linalg.norm(cent, axis=1), 1.0, atol=1e-6)
        dots = cent @ x.T  # every centroid is a data row (the rows are unit vectors)
        np.testing.assert_allclose(dots.max(axis=1), 1.0, atol=1e-5)
        assert len(np.unique(dots.argmax(axis=1))) == 30  # ... and 30 different ones


def test_greedy_kmeanspp_with_fewer_distinct_vectors_than_k():
    rng = np.random.default_rng(0)
    x = np.repeat(normalise(rng.standard_normal((3, 8))), 4, axis=0)  # 3 distinct vectors, 12 rows
    rows = greedy_kmeanspp_rows(x, 5, seed=0)
    assert len(np.unique(rows)) == 5
    assert len({tuple(x[r]) for r in rows}) == 3  # all 3 distinct vectors are found first


def test_greedy_kmeanspp_beats_random_init_on_uneven_topics():
    # random points over-seed the big topics and leave small ones merged; Lloyd iterations
    # do not undo that. Greedy k-means++ (scikit-learn's seeding) finds (nearly) every topic.
    x, _ = uneven_blobs()
    for seed in range(3):
        objective = {}
        for init in ("random", "greedy-kmeans++"):
            _, sim = assign(x, train_spherical_kmeans(x, 30, iters=20, seed=seed, init=init))
            objective[init] = float(sim.astype(np.float64).mean())
        assert objective["greedy-kmeans++"] > objective["random"] + 0.005, (seed, objective)
        assert objective["greedy-kmeans++"] > 0.95  # 1 / sqrt(1 + 0.3**2) = 0.958 for the true topics


def test_init_is_a_setting_and_random_still_works(tmp_path, emb, clustered):
    ok("cluster", emb, "--out", tmp_path / "r", "--k", 12, "--init", "random")
    ok("cluster", emb, "--out", tmp_path / "r2", "--k", 12, "--init", "random")
    _, _, cent, man = read(tmp_path / "r")
    assert man["settings"]["init"] == "random" and man["statistics"]["init_points"] is None
    for name in OUTPUTS:
        assert (tmp_path / "r" / name).read_bytes() == (tmp_path / "r2" / name).read_bytes(), name
    assert cent.tobytes() != np.load(clustered / "centroids.npy").tobytes()
    # the same job with another init is another job
    assert "--overwrite" in fails("cluster", emb, "--out", tmp_path / "r", "--k", 12)


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_byte_identical_files_other_seed_differs(tmp_path, emb):
    ok("cluster", emb, "--out", tmp_path / "a", "--k", 12, "--seed", 7)
    ok("cluster", emb, "--out", tmp_path / "b", "--k", 12, "--seed", 7)
    ok("cluster", emb, "--out", tmp_path / "c", "--k", 12, "--seed", 8)
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "centroids.npy").read_bytes() != (tmp_path / "c" / "centroids.npy").read_bytes()


def test_pinned_threads_are_recorded_and_reproducible(tmp_path, emb):
    import faiss

    before = faiss.omp_get_max_threads()
    ok("cluster", emb, "--out", tmp_path / "a", "--k", 12, "--threads", 1)
    ok("cluster", emb, "--out", tmp_path / "b", "--k", 12, "--threads", 1)
    assert faiss.omp_get_max_threads() == before  # restored
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert man["statistics"]["threads"] == 1 and "threads" not in man["settings"]
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # the thread count is not part of the job: a rerun with another one is already done
    assert "already done" in ok("cluster", emb, "--out", tmp_path / "a", "--k", 12).output


def test_training_sample_is_seeded_and_used(tmp_path, emb):
    ok("cluster", emb, "--out", tmp_path / "a", "--k", 4, "--max-train-points", 500, "--iters", 5)
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert man["statistics"]["train_points"] == 500
    assert man["settings"]["max_train_points"] == 500 and man["settings"]["iters"] == 5
    rows1, _ = cluster_step._training_sample(EmbedDir(emb).store(), 500, seed=3)
    rows2, _ = cluster_step._training_sample(EmbedDir(emb).store(), 500, seed=3)
    assert np.array_equal(rows1, rows2) and len(np.unique(rows1)) == 500


def test_multi_part_float16_embeddings(tmp_path, data):
    x = data[0]
    e = write_embed_dir(tmp_path / "e16", x, parts=5, dtype=np.float16)
    assert len(list(e.glob("embeddings-*.npy"))) == 5
    ok("cluster", e, "--out", tmp_path / "cl", "--k", 6)
    a, _, cent, man = read(tmp_path / "cl")
    x16 = x.astype(np.float16).astype(np.float32)
    labels = a.column("cluster").to_numpy()
    np.testing.assert_allclose(a.column("similarity").to_numpy(), np.einsum("ij,ij->i", x16, cent[labels]), atol=1e-5)
    assert man["statistics"]["n_docs"] == len(x)


def test_empty_clusters_are_kept_with_size_zero(tmp_path):
    rng = np.random.default_rng(0)
    x = np.repeat(normalise(rng.standard_normal((3, 16))), 10, axis=0)  # only 3 distinct documents
    e = write_embed_dir(tmp_path / "e", x)
    ok("cluster", e, "--out", tmp_path / "cl", "--k", 5)
    _, c, cent, man = read(tmp_path / "cl")
    sizes = c.column("size").to_numpy()
    assert len(sizes) == 5 and len(cent) == 5 and sizes.sum() == 30
    empty = [i for i, s in enumerate(sizes) if s == 0]
    assert empty and man["statistics"]["empty_clusters"] == len(empty)
    assert man["statistics"]["empty_cluster_ids"] == empty
    means = c.column("mean_similarity").to_pylist()
    assert all(means[i] is None for i in empty)


def test_two_levels_add_a_parent_per_cluster(tmp_path, emb):
    ok("cluster", emb, "--out", tmp_path / "cl", "--k", 12, "--levels", 2, "--k2", 3)
    _, c, cent, man = read(tmp_path / "cl")
    c2 = np.load(tmp_path / "cl" / "centroids-level2.npy")
    assert c2.shape == (3, cent.shape[1])
    parent = c.column("parent").to_numpy()
    assert c.schema.field("parent").type == pa.int32()
    assert np.array_equal(parent, (cent @ c2.T).argmax(axis=1))
    np.testing.assert_allclose(c.column("parent_similarity").to_numpy(), (cent @ c2.T).max(axis=1), atol=1e-6)
    lvl = man["statistics"]["level2"]
    assert lvl["k"] == 3 and lvl["docs_per_parent"]["mean"] == pytest.approx(3000 / 3)
    assert man["settings"]["levels"] == 2 and man["settings"]["k2"] == 3
    assert "centroids-level2.npy" in {o["path"] for o in man["outputs"]}
    assert "--levels 2" in fails("cluster", emb, "--out", tmp_path / "x", "--k", 12, "--k2", 3)
    assert "--k2 13" in fails("cluster", emb, "--out", tmp_path / "x", "--k", 12, "--levels", 2, "--k2", 13)


# --------------------------------------------------------------------------- reruns and resume
def test_rerun_is_a_no_op_and_other_settings_are_refused(tmp_path, emb, clustered):
    before = {n: (clustered / n).stat().st_mtime_ns for n in OUTPUTS}
    r = ok("cluster", emb, "--out", clustered, "--k", 12, "--seed", 0)
    assert "already done" in r.output
    assert {n: (clustered / n).stat().st_mtime_ns for n in OUTPUTS} == before

    err = fails("cluster", emb, "--out", clustered, "--k", 10)
    assert "--overwrite" in err
    out = tmp_path / "cl"
    ok("cluster", emb, "--out", out, "--k", 12)
    ok("cluster", emb, "--out", out, "--k", 10, "--overwrite")
    assert json.loads((out / "manifest.json").read_text())["settings"]["k"] == 10


def test_interrupted_run_resumes_without_retraining(tmp_path, emb, monkeypatch):
    out = tmp_path / "cl"

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(cluster_step, "assign_task", interrupted)  # the assignment pass, as the engine runs it
    r = cli("cluster", emb, "--out", out, "--k", 12, "--seed", 0)
    assert r.exit_code == 130 and "rerun the same command to resume" in r.output
    assert (out / ".clusterclip" / "build" / "centroids.npy").exists() and not (out / "manifest.json").exists()
    monkeypatch.undo()

    def no_training(*a, **kw):
        raise AssertionError("training ran again")

    monkeypatch.setattr(cluster_step, "train_spherical_kmeans_with_stats", no_training)
    messages = []
    result = cluster_embeddings(emb, out, k=12, seed=0, log=messages.append)
    assert any("resuming" in m for m in messages)
    assert result.state == "resume"
    monkeypatch.undo()
    ok("cluster", emb, "--out", tmp_path / "clean", "--k", 12, "--seed", 0)
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name


def test_config_file_supplies_options(tmp_path, emb):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[cluster]\nk = 3\niters = 4\nseed = 5\n")
    ok("cluster", emb, "--out", tmp_path / "cl", "--config", cfg)
    s = json.loads((tmp_path / "cl" / "manifest.json").read_text())["settings"]
    assert (s["k"], s["iters"], s["seed"]) == (3, 4, 5)


# --------------------------------------------------------------------------- errors
def test_k_larger_than_n_docs(tmp_path, emb):
    err = fails("cluster", emb, "--out", tmp_path / "cl", "--k", 3001)
    assert err == f"error: --k 3001: larger than the number of documents (N=3000) in {emb}; lower --k"
    assert not (tmp_path / "cl").exists()


def test_k_below_one(tmp_path, emb):
    assert "--k" in fails("cluster", emb, "--out", tmp_path / "cl", "--k", 0)


def test_missing_manifest(tmp_path, data):
    e = write_embed_dir(tmp_path / "e", data[0][:100], manifest=False)
    err = fails("cluster", e, "--out", tmp_path / "cl", "--k", 2)
    assert "manifest.json" in err and "missing" in err
    err = fails("cluster", tmp_path / "nope", "--out", tmp_path / "cl", "--k", 2)
    assert "clusterclip embed" in err


def test_row_count_mismatches(tmp_path, data):
    x = data[0][:100]
    e = write_embed_dir(tmp_path / "e1", x, manifest_n_docs=99)
    err = fails("cluster", e, "--out", tmp_path / "cl", "--k", 2)
    assert "100 rows" in err and "n_docs=99" in err and "rerun `clusterclip embed" in err
    e = write_embed_dir(tmp_path / "e2", x, docs_rows=98)
    err = fails("cluster", e, "--out", tmp_path / "cl", "--k", 2)
    assert "docs.parquet" in err and "98 rows" in err and "rerun `clusterclip embed" in err
    assert not (tmp_path / "cl").exists()


@pytest.mark.parametrize("bad, words", [(np.nan, "NaN"), (0.0, "zero norm"), (3.0, "not L2-normalised")])
def test_bad_embedding_rows_are_named(tmp_path, data, bad, words):
    x = data[0][:200].copy()
    x[137] = bad if bad != 3.0 else x[137] * 3.0
    e = write_embed_dir(tmp_path / "e", x, parts=2)  # rows 0..99 in part 0, 100..199 in part 1
    err = fails("cluster", e, "--out", tmp_path / "cl", "--k", 4)
    assert words in err
    assert "embeddings-00001.npy, row 37 (doc_id 137)" in err


def test_bad_row_outside_the_training_sample_is_found_when_assigning(tmp_path, data):
    x = data[0][:1000].copy()
    x[999] = np.nan
    e = write_embed_dir(tmp_path / "e", x)
    err = fails("cluster", e, "--out", tmp_path / "cl", "--k", 2, "--max-train-points", 10)
    assert "row 999" in err and "NaN" in err


def test_cuda_without_gpu_is_a_clear_error(tmp_path, emb):
    if gpu_available():
        pytest.skip("a GPU is present")
    assert "no GPU" in fails("cluster", emb, "--out", tmp_path / "cl", "--k", 2, "--device", "cuda")
    assert "no GPU" in fails("cluster", emb, "--out", tmp_path / "cl", "--k", 2, "--device", "cuda:1")
    assert "not a device" in fails("cluster", emb, "--out", tmp_path / "cl", "--k", 2, "--device", "gpu")
    assert not (tmp_path / "cl").exists()


def test_cuda_n_picks_that_gpu_for_training_and_assignment(tmp_path, emb, monkeypatch):
    """``--device cuda:N`` reaches faiss's GPU index as device N (faiss mocked: two GPUs, indexes on the CPU)."""
    import clusterclip.cluster.assignment as assignment_mod
    import clusterclip.cluster.kmeans as kmeans_mod

    built = []
    real = kmeans_mod.flat_ip_index

    def flat_ip_index(dim, gpu, device=0):
        built.append((gpu, device))
        return real(dim, False)

    monkeypatch.setattr(kmeans_mod, "gpu_count", lambda: 2)
    monkeypatch.setattr(kmeans_mod, "flat_ip_index", flat_ip_index)
    monkeypatch.setattr(assignment_mod, "flat_ip_index", flat_ip_index)
    assert "cuda:0..cuda:1" in fails("cluster", emb, "--out", tmp_path / "c2", "--k", 2, "--device", "cuda:2")
    result = ok("cluster", emb, "--out", tmp_path / "c1", "--k", 3, "--device", "cuda:1")
    assert built and set(built) == {(True, 1)}, built
    assert json.loads((tmp_path / "c1" / "manifest.json").read_text())["settings"]["device"] == "cuda"
    assert "cuda:1" in result.output


@pytest.mark.slow
def test_any_number_of_parts_stays_within_the_open_file_limit(tmp_path, data):
    """600 parts under a limit of 128 open files: parts are mapped a few at a time."""
    import subprocess
    import sys

    e = write_embed_dir(tmp_path / "many", data[0][:1200], parts=600)
    script = ("import resource, sys\n"
              "resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))\n"
              "from clusterclip.cluster import cluster_embeddings\n"
              f"r = cluster_embeddings({str(e)!r}, {str(tmp_path / 'cl')!r}, k=6, progress=False)\n"
              "assert r.statistics['n_docs'] == 1200\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
