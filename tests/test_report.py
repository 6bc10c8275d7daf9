"""`clusterclip report` and `clusterclip clusters`: the page, its figures' numbers, keywords, examples."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterclip.errors import MismatchError
from clusterclip.report import build_report, cluster_table
from clusterclip.report.examples import doc_hash, excerpt, select_documents
from clusterclip.report.keywords import STOP_WORDS, top_keywords
from clusterclip.report.mix import expected_counts
from clusterclip.schedule.law import Budget, SamplingLaw
from clusterclip.schedule.sampling import plan_schedule
from clusterclip.schedule.stats import schedule_statistics

from helpers import load_script, run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def scheduled(embedded, clustered) -> Path:
    """A clusterclip dry-run schedule of the session corpus whose clip empties some clusters."""
    sched = clustered.parent / "sched-report"
    run_cli(["schedule", embedded, clustered, "--out", sched, "--dry-run", "--epochs", 2, "--max-repeats", 2])
    return sched


@pytest.fixture(scope="module")
def report_dir(embedded, clustered, scheduled, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report"
    result = run_cli(["report", embedded, clustered, scheduled, "--out", out])
    assert f"{out / 'index.html'}" in result.output
    return out


class _Page(HTMLParser):
    """The parts of index.html the tests read: images and the table cells (class -> text, data-value)."""

    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.rows: list[dict] = []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag == "tr" and (a.get("id") or "").startswith("cluster-"):
            self.rows.append({"id": int(a["id"].split("-")[1])})
        elif tag == "td" and self.rows:
            name = (a.get("class") or "").split()[-1]
            self._cell = name
            self.rows[-1][name] = {"value": a.get("data-value"), "text": ""}

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self.rows[-1][self._cell]["text"] += data


def parse_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text("utf-8"))
    return page


def read_clusters_parquet(cl: Path):
    t = pq.read_table(cl / "clusters.parquet").to_pydict()
    return t["size"], t["mean_similarity"]


# --------------------------------------------------------------------------- the page
def test_report_page_matches_the_artifacts(report_dir, clustered, scheduled):
    page = parse_page(report_dir / "index.html")
    sizes, mean_sim = read_clusters_parquet(clustered)
    manifest = json.loads((scheduled / "manifest.json").read_text())
    stats = manifest["statistics"]

    # every image is an inline PNG, the same bytes as the PNG file beside the page
    assert len(page.images) == len(list((report_dir / "figures").iterdir())) == 8
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(img["src"].split(",", 1)[1])
        assert png.startswith(PNG_MAGIC)
        assert (report_dir / img["data-file"]).read_bytes() == png

    # one row per cluster, largest first, numbers equal to clusters.parquet and the schedule manifest
    assert sorted(r["id"] for r in page.rows) == list(range(len(sizes)))
    shown_sizes = [int(r["size"]["value"]) for r in page.rows]
    assert shown_sizes == sorted(shown_sizes, reverse=True)
    left_pool = 0
    for r in page.rows:
        c = r["id"]
        assert int(r["size"]["value"]) == sizes[c]
        assert r["size"]["text"] == f"{sizes[c]:,}"
        assert float(r["similarity"]["value"]) == pytest.approx(mean_sim[c], abs=1e-7)
        assert r["similarity"]["text"] == f"{mean_sim[c]:.4f}"
        assert float(r["share"]["value"]) == pytest.approx(sizes[c] / sum(sizes))
        assert int(r["samples"]["value"]) == stats["cluster_samples"][c]
        left_pool += int(r["left"]["value"]) >= 0
        assert r["keywords"]["text"].strip() not in ("", "–")
        assert r["nearest"]["text"].strip() not in ("", "–")
    assert left_pool == stats["clusters_exhausted"] > 0
    assert "(encoder hf, model sentence-transformers/all-MiniLM-L6-v2" in (report_dir / "index.html").read_text()


def test_report_figures_plot_the_manifest_statistics(report_dir, clustered, scheduled):
    data = json.loads((report_dir / "report.json").read_text())
    stats = json.loads((scheduled / "manifest.json").read_text())["statistics"]
    sizes, _ = read_clusters_parquet(clustered)
    figures = data["figures"]
    assert data["warnings"] == []

    mix = figures["sizes_and_shares"]
    assert [sizes[c] for c in mix["cluster_order"]] == mix["sizes"] == sorted(sizes, reverse=True)
    shares = {name: dict(zip(mix["cluster_order"], values)) for name, values in mix["shares"].items()}
    for c, n in enumerate(stats["cluster_samples"]):
        assert shares["schedule"][c] == pytest.approx(n / stats["samples"])
        assert shares["random"][c] == pytest.approx(sizes[c] / sum(sizes))
        assert shares["uniform"][c] == pytest.approx(1 / len(sizes))
    assert sum(shares["clusterclip"].values()) == pytest.approx(1.0)

    # the figures over training count finer parts than the manifest's tenths: summed back, they are the tenths
    balance = figures["balance_over_time"]
    counts = np.asarray(balance["counts"])
    per_tenth = counts.reshape(10, -1, counts.shape[1]).sum(axis=1)
    tenths = stats["balance"]["bin_edges"]
    assert balance["edges"][:: len(counts) // 10] == tenths
    np.testing.assert_allclose(per_tenth / np.diff(tenths)[:, None], stats["balance"]["shares"], atol=1e-6)
    assert balance["totals"] == stats["cluster_samples"]

    uses = figures["repetition"]["docs_by_uses"]
    assert sum(uses) == stats["unique_docs_used"] + stats["docs_never_used"]
    assert uses[0] == stats["docs_never_used"]
    assert len(uses) - 1 == stats["max_repeat_count"]
    assert sum(u * n for u, n in enumerate(uses)) == stats["samples"]
    assert figures["repetition"]["clips"] == {"2": int(np.count_nonzero(sizes))}

    exits = figures["pool_exits"]
    assert len(exits["clip"]["clusters"]) == stats["clusters_exhausted"] and exits["budget"]["clusters"] == []
    positions = exits["clip"]["positions"]
    assert positions == sorted(positions)
    assert all(0 <= p < stats["samples"] for p in positions)


def test_report_pool_exit_is_the_last_use_of_the_cluster(report_dir, scheduled):
    exits = json.loads((report_dir / "report.json").read_text())["figures"]["pool_exits"]["clip"]
    order = pq.read_table(scheduled / "order.parquet").to_pydict()
    for c, position in zip(exits["clusters"], exits["positions"]):
        used = [p for p, cl in zip(order["position"], order["cluster"]) if cl == c]
        assert max(used) == position


@pytest.mark.slow
def test_report_in_a_real_browser(report_dir, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium is missing: .ci/run installs it with `apt-get install -y chromium`")
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI runs this test")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}"]

    # the page as it is: a screenshot that is not blank
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,1600", (report_dir / "index.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (1600, 1280)
    not_white = (pixels < 0.9).any(axis=2).mean()
    assert 0.02 < not_white < 0.9, f"screenshot looks blank ({not_white:.1%} of pixels not white)"
    assert len(np.unique(pixels.reshape(-1, 3).round(2), axis=0)) > 50  # figures, not a flat page

    # a copy of the page with a probe that records which images the browser decoded
    probe = report_dir.parent / "probe.html"
    html = (report_dir / "index.html").read_text("utf-8")
    script = ("<script>window.addEventListener('load', () => { const all = [...document.images]; "
              "const ok = all.filter(i => i.complete && i.naturalWidth > 0); "
              "document.body.setAttribute('data-images', all.length + '/' + ok.length); });</script>")
    probe.write_text(html.replace("</body>", script + "</body>"), "utf-8")
    dom = subprocess.run([*flags, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    assert 'data-images="8/8"' in dom


def test_report_is_reproducible_and_reruns_cleanly(embedded, clustered, scheduled, report_dir, tmp_path):
    out = tmp_path / "report"
    build_report(embedded, clustered, scheduled, out)
    # the same inputs and settings give the same bytes (seeded sample, PNGs without timestamps)
    for name in ("index.html", "report.json", "figures/sizes_and_shares.png", "figures/balance_over_time.png"):
        assert (out / name).read_bytes() == (report_dir / name).read_bytes(), name
    assert (out / "figures" / "pool_exits.png").exists()
    # another report into the same directory (without a schedule) needs overwrite, and then replaces the
    # old one: the schedule figures (its own files) are removed
    with pytest.raises(MismatchError, match="--overwrite"):
        build_report(embedded, clustered, None, out)
    index = build_report(embedded, clustered, None, out, overwrite=True)
    assert index == out / "index.html"
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["centroid_map.png", "sizes_and_shares.png"]
    page = parse_page(index)
    assert len(page.images) == 2
    assert "samples" not in page.rows[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["step"] == "report"
    assert {o["path"] for o in manifest["outputs"]} == {"index.html", "report.json", "figures/centroid_map.png",
                                                        "figures/sizes_and_shares.png"}


def test_report_refuses_foreign_or_linked_out(embedded, clustered, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):  # a directory clusterclip did not make is never written into
        result = run_cli(["report", embedded, clustered, "--out", foreign, *extra], expect_ok=False)
        assert result.exit_code == 2 and "not a clusterclip output directory" in result.output
        assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    report = tmp_path / "linked"
    run_cli(["report", embedded, clustered, "--out", report])
    real = tmp_path / "real"
    real.mkdir()
    (report / "figures").rename(real / "figures")
    (report / "figures").symlink_to(real / "figures", target_is_directory=True)
    before = sorted(p.name for p in (real / "figures").iterdir())
    result = run_cli(["report", embedded, clustered, "--out", report, "--seed", 3, "--overwrite"], expect_ok=False)
    assert result.exit_code == 2 and "symbolic link" in result.output
    assert sorted(p.name for p in (real / "figures").iterdir()) == before


def test_report_refuses_a_schedule_of_other_clusters(embedded, clustered, tmp_path):
    other = tmp_path / "cl-other"
    run_cli(["cluster", embedded, "--out", other, "--k", 3, "--seed", 1])
    sched = tmp_path / "sched-other"
    run_cli(["schedule", embedded, other, "--out", sched, "--dry-run"])
    result = run_cli(["report", embedded, clustered, sched, "--out", tmp_path / "r"], expect_ok=False)
    assert result.exit_code == 2 and "was scheduled from" in result.output
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- clusters
def test_clusters_table_show_and_json(embedded, clustered, small_docs):
    sizes, _ = read_clusters_parquet(clustered)
    table = run_cli(["clusters", clustered]).output.splitlines()
    assert table[0].split()[:4] == ["cluster", "docs", "share", "mean"] and "keywords" in table[0]
    assert [int(line.split()[1].replace(",", "")) for line in table[1:1 + len(sizes)]] == sizes

    k = int(np.argmax(sizes))
    shown = json.loads(run_cli(["clusters", clustered, "--show", k, "--json"]).output)
    assert shown["cluster"] == k and shown["size"] == sizes[k] and shown["keywords"]
    assignments = pq.read_table(clustered / "assignments.parquet").to_pydict()
    members = sorted((s, d) for d, c, s in zip(assignments["doc_id"], assignments["cluster"],
                                                assignments["similarity"]) if c == k)
    nearest = [d for _, d in sorted(members, key=lambda m: (-m[0], m[1]))[:3]]
    edge = [d for _, d in members[:2]]
    assert [e["doc_id"] for e in shown["nearest"]] == nearest
    assert [e["doc_id"] for e in shown["edge"]] == [d for d in edge if d not in nearest]
    for e in shown["nearest"] + shown["edge"]:
        doc = small_docs[e["row"]]  # the corpus is one JSONL file, its lines are the documents
        assert e["user_id"] == doc["id"]
        assert Path(e["source"]).name == "docs.jsonl"
        assert " ".join(doc["text"].split()).startswith(e["excerpt"].removesuffix(" …").rstrip(" ,;:."))

    text = run_cli(["clusters", clustered, "--show", k]).output
    assert text.startswith(f"cluster {k}: {sizes[k]:,} documents")
    assert f"keywords (TF-IDF over {sizes[k]} sampled documents): {', '.join(shown['keywords'])}" in text
    assert shown["nearest"][0]["user_id"] in text

    whole = json.loads(run_cli(["clusters", clustered, "--json"]).output)
    assert [c["size"] for c in whole["clusters"]] == sizes
    assert whole["clusters"][k]["keywords"] == shown["keywords"]  # one ranking, whatever is shown


def test_clusters_finds_or_is_given_the_embed_dir(embedded, clustered, tmp_path):
    moved = tmp_path / "cl-moved"
    gone = tmp_path / "emb-gone"  # clusters whose embed directory was moved away (a copy stays at `embedded`)
    shutil.copytree(embedded, gone)
    run_cli(["cluster", gone, "--out", moved, "--k", 5, "--seed", 0])
    shutil.rmtree(gone)
    result = run_cli(["clusters", moved])
    assert "note: no keywords" in result.output and "--emb" in result.output
    assert "keywords" not in result.output.splitlines()[1]
    refused = run_cli(["clusters", moved, "--show", 0], expect_ok=False)
    assert refused.exit_code == 2 and "pass --emb EMB" in refused.output
    with_emb = json.loads(run_cli(["clusters", moved, "--emb", embedded, "--show", 0, "--json"]).output)
    assert with_emb["keywords"]
    wrong = run_cli(["clusters", moved, "--emb", moved], expect_ok=False)
    assert wrong.exit_code == 2 and "embed" in wrong.output
    missing = run_cli(["clusters", clustered, "--show", 99], expect_ok=False)
    assert missing.exit_code == 2 and "no such cluster" in missing.output


# --------------------------------------------------------------------------- keywords
TOPIC_WORDS = {
    "asyncio": ["coroutine", "eventloop", "await", "future", "task", "asyncio"],
    "unittest": ["assertion", "mock", "testcase", "fixture", "patch", "unittest"],
    "json": ["serialize", "decoder", "encoder", "json", "dumps", "loads"],
    "sockets": ["socket", "tcp", "port", "host", "connection", "udp"],
    "decimal": ["decimal", "rounding", "precision", "exponent", "quantize", "operand"],
    "email": ["header", "mime", "message", "charset", "mailbox", "smtp"],
}
COMMON_WORDS = ["python", "module", "program", "library", "interpreter", "file", "code", "standard", "text",
                "line", "system", "user", "input", "output", "run", "time", "process", "information", "memory",
                "error", "buffer", "format"]


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(n_topics=st.integers(2, len(TOPIC_WORDS)), docs_per_topic=st.integers(6, 40), seed=st.integers(0, 2**16))
def test_keywords_of_planted_topics_are_the_topic_words(n_topics, docs_per_topic, seed):
    rng = np.random.default_rng(seed)
    topics = list(TOPIC_WORDS)[:n_topics]
    docs = {}
    for t, topic in enumerate(topics):
        texts = []
        for _ in range(int(rng.integers(max(6, docs_per_topic // 2), docs_per_topic + 1))):
            # a third of the content words are the topic's, two thirds words every topic uses
            words = list(rng.choice(COMMON_WORDS, 24)) + list(rng.choice(TOPIC_WORDS[topic], 12))
            words += ["the", "returns", "none", "default", "argument"] * 3  # stop words and docstring boilerplate
            rng.shuffle(words)
            texts.append(" ".join(words))
        docs[t] = texts
    keywords = top_keywords(docs, n_terms=5)
    for t, topic in enumerate(topics):
        assert keywords[t][:3] and set(keywords[t][:3]) <= set(TOPIC_WORDS[topic]), (topic, keywords[t])
        assert not set(keywords[t]) & STOP_WORDS


def test_cluster_table_keywords_on_a_planted_corpus(tmp_path):
    bench = load_script("bench_report")
    emb, cl, _, topic_of, topics = bench.build_pipeline(tmp_path, n_docs=600, n_topics=6, dim=16)
    table = cluster_table(cl, emb)
    labels = pq.read_table(cl / "assignments.parquet").column("cluster").to_numpy()
    for row in table.rows:
        planted = topics[np.bincount(topic_of[labels == row.cluster]).argmax()]
        assert set(row.keywords[:3]) <= set(planted), (row.cluster, row.keywords, planted)
        assert len(row.nearest) == 3 and len(row.edge) == 2
        assert [e.similarity for e in row.nearest] == sorted((e.similarity for e in row.nearest), reverse=True)
        assert row.nearest[-1].similarity >= row.edge[-1].similarity >= row.edge[0].similarity
        assert all(e.user_id == f"doc-{e.doc_id}" and e.row == e.doc_id for e in row.nearest + row.edge)
    # a smaller total budget lowers the sample per cluster, and the keywords still come from each topic
    small = cluster_table(cl, emb, max_sample_docs=60)
    assert small.sample_docs_per_cluster == 10 and small.sampled_docs == 60
    assert all(r.keyword_docs == 10 for r in small.rows)


# --------------------------------------------------------------------------- the streaming selection
@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(0, 300), k=st.integers(1, 8), batch=st.integers(1, 64),
       n_nearest=st.integers(0, 4), n_edge=st.integers(0, 3), per_cluster=st.integers(0, 20), seed=st.integers(0, 99))
def test_streaming_selection_equals_a_full_sort(data, n, k, batch, n_nearest, n_edge, per_cluster, seed):
    rng = np.random.default_rng(seed)
    doc_id = rng.permutation(n).astype(np.int64)
    cluster = rng.integers(0, k, n).astype(np.int64)
    sim = rng.choice(np.linspace(0, 1, 7), n).astype(np.float32)  # many ties: broken by doc_id
    batches = [(doc_id[i:i + batch], cluster[i:i + batch], sim[i:i + batch]) for i in range(0, n, batch)]
    sizes = np.bincount(cluster, minlength=k)
    shown = data.draw(st.lists(st.integers(0, k - 1), unique=True))
    sel = select_documents(iter(batches), n_clusters=k, n_nearest=n_nearest, n_edge=n_edge,
                           sample_limit=np.minimum(sizes, per_cluster), example_clusters=np.array(shown, np.int64),
                           seed=seed)
    hashes = doc_hash(doc_id, seed)
    for c in range(k):
        m = cluster == c
        ids, s, h = doc_id[m], sim[m].astype(np.float64), hashes[m]
        near = ids[np.lexsort((ids, -s))][:n_nearest] if c in shown else ids[:0]
        edge = ids[np.lexsort((ids, s))][:n_edge] if c in shown else ids[:0]
        edge = edge[~np.isin(edge, near)]
        sample = ids[np.lexsort((ids, h))][:per_cluster]
        assert sel.nearest.get(c, ids[:0]).tolist() == near.tolist()
        assert sel.edge.get(c, ids[:0]).tolist() == edge.tolist()
        assert sel.sample.get(c, ids[:0]).tolist() == sample.tolist()


def test_excerpt():
    assert excerpt("  a  b\n\nc ", 10) == "a b c"
    text = "word " * 100
    cut = excerpt(text, 42)
    assert cut.endswith(" …") and len(cut) <= 44 and not cut[:-2].endswith(" ")
    assert excerpt("x" * 100, 10) == "x" * 10 + " …"


# --------------------------------------------------------------------------- shares and the order scan
@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 200), min_size=1, max_size=12), fraction=st.floats(0.01, 1.2),
       max_repeats=st.integers(1, 5), alpha=st.sampled_from([0.0, 0.5, 1.0]))
def test_expected_clusterclip_counts_fill_to_the_budget(sizes, fraction, max_repeats, alpha):
    sizes = np.array(sizes)
    samples = int(fraction * max_repeats * sizes.sum())
    counts = expected_counts(sizes, sampler="clusterclip", samples=samples, max_repeats=max_repeats, alpha=alpha)
    cap = max_repeats * sizes
    assert counts.sum() == pytest.approx(min(samples, cap.sum()))
    assert np.all(counts <= cap + 1e-9)
    # clusters below their cap are all at the same level per unit of weight, and capped ones below it
    weight = np.where(sizes > 0, np.maximum(sizes, 1) ** alpha, 0.0)
    free = (counts < cap - 1e-9) & (weight > 0)
    if free.any():
        level = counts[free] / weight[free]
        assert np.allclose(level, level[0])
        capped = (weight > 0) & ~free
        assert np.all(cap[capped] <= level[0] * weight[capped] + 1e-6)


def test_expected_clusterclip_counts_match_the_sampler():
    rng = np.random.default_rng(0)
    sizes = np.r_[rng.integers(5, 40, 20), rng.integers(400, 2000, 5)]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    for epochs in (0.5, 1, 2):
        samples = int(epochs * len(labels))
        expected = expected_counts(sizes, sampler="clusterclip", samples=samples, max_repeats=4)
        schedule = plan_schedule(labels, SamplingLaw(max_repeats=4), Budget(epochs=epochs), seed=1)
        actual = np.bincount(schedule.cluster, minlength=len(sizes))
        np.testing.assert_allclose(actual, expected, rtol=0.1, atol=10)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(0, 30), min_size=1, max_size=8).filter(lambda s: sum(s) > 0),
       sampler=st.sampled_from(["clusterclip", "uniform", "random"]), epochs=st.floats(0.2, 3.0),
       max_repeats=st.integers(1, 4), batch=st.integers(1, 50), seed=st.integers(0, 9))
def test_order_timeline_matches_schedule_statistics(tmp_path_factory, sizes, sampler, epochs, max_repeats, batch,
                                                     seed):
    from clusterclip.report.timeline import scan_timeline
    from clusterclip.schedule.directory import write_order

    labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(sizes)), sizes))
    schedule = plan_schedule(labels, SamplingLaw(sampler=sampler, max_repeats=max_repeats), Budget(epochs=epochs),
                             seed=seed, allow_partial=True)
    clip = max_repeats if sampler == "clusterclip" else None
    stats = schedule_statistics(schedule, n_docs=len(labels), n_clusters=len(sizes), labels=labels, max_repeats=clip)
    d = tmp_path_factory.mktemp("order")
    write_order(d / "order.parquet", schedule)
    pf = pq.ParquetFile(d / "order.parquet")
    batches = ({c: b.column(c).to_numpy().astype(np.int64) for c in ("position", "cluster", "repeat")}
               for b in pf.iter_batches(batch_size=batch))
    tl = scan_timeline(batches, samples=len(schedule), k=len(sizes))
    assert tl.cluster_samples.tolist() == stats["cluster_samples"]
    widths = np.maximum(np.diff(stats["balance"]["bin_edges"]), 1)[:, None]
    np.testing.assert_allclose(tl.tenths(tl.part_samples) / widths, stats["balance"]["shares"], atol=1e-6)
    uses = np.bincount(np.bincount(schedule.doc_id, minlength=len(labels)))
    assert tl.docs_by_uses(len(labels)).tolist() == uses.tolist()
    if clip is not None:
        at_clip = (np.asarray(sizes) > 0) & (tl.cluster_samples == clip * np.asarray(sizes))
        assert int(at_clip.sum()) == stats["clusters_exhausted"]
        for c in np.flatnonzero(at_clip):
            assert tl.last_position[c] == np.flatnonzero(schedule.cluster == c).max()


def test_centroid_map_uses_umap_when_installed(monkeypatch):
    import sys
    import types

    from clusterclip.errors import InputError
    from clusterclip.report.figures import project_2d

    x = np.random.default_rng(0).standard_normal((10, 5))
    monkeypatch.setitem(sys.modules, "umap", None)  # not installed
    xy, method = project_2d(x)
    assert method == "PCA" and xy.shape == (10, 2)
    with pytest.raises(InputError, match="umap"):
        project_2d(x, method="umap")

    class FakeUMAP:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def fit_transform(self, data):
            return data[:, :2] * 0 + 1

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    xy, method = project_2d(x)
    assert method == "UMAP" and np.all(xy == 1)
    assert project_2d(x, method="pca")[1] == "PCA"


def test_page_escapes_corpus_text():
    from clusterclip.report.html import render_page
    from clusterclip.report.table import ClusterRow, Example

    evil = '<script>alert("x")</script> & <b>'
    example = Example(doc_id=0, similarity=0.5, user_id=evil, source=f"/data/{evil}.jsonl", row=3, excerpt=evil)
    row = ClusterRow(cluster=0, size=1, share=1.0, mean_similarity=0.5, keywords=["kw"], nearest=[example])
    page = render_page(title="t", summary=[evil], warnings=[evil], sections=[], rows=[row], table_note=evil,
                       schedule=None, footer=evil)
    assert "<script>" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;" in page
