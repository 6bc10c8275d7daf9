"""Honest progress (issue 26 item 1): exact totals where counting is cheap, rates of the work that
takes the time, ETAs that move with the clock, tested against synthetic timings (a fake clock).

The measured error of the ETA on real runs is printed by ``scripts/eta_accuracy.py`` (no wall
clock is asserted here).
"""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_incremental import CountingEncoder, write_file

from clusterclip import progress
from clusterclip.embed import embed_corpus
from clusterclip.progress import DocumentTotal, EncodeEta, FileSeen, WorkEta, format_seconds, rate_eta
from clusterclip.readers import Partitioning, ReadStats, iter_numbered_documents, reader_for
from clusterclip.readers.counting import count_rows

# ----------------------------------------------------------------------------- counting rows

LINE = st.one_of(st.just(""), st.just("   "), st.text(max_size=30).map(lambda t: json.dumps({"text": t})))


def _write_lines(path, lines, ending: str, trailing: bool, comp: str):
    data = ending.join(lines) + (ending if trailing and lines else "")
    raw = data.encode("utf-8", "surrogatepass")
    if comp == "gz":
        raw = gzip.compress(raw, mtime=0)
    elif comp == "zst":
        import zstandard

        raw = zstandard.ZstdCompressor().compress(raw)
    path.write_bytes(raw)
    return path


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, min_size=1, max_size=40), ending=st.sampled_from(["\n", "\r\n"]), trailing=st.booleans(),
       comp=st.sampled_from(["", "gz", "zst"]))
def test_a_counted_json_lines_file_has_exactly_the_rows_the_reader_numbers(tmp_path_factory, lines, ending, trailing,
                                                                           comp):
    path = _write_lines(tmp_path_factory.mktemp("c") / f"f.jsonl{'.' + comp if comp else ''}", lines, ending,
                        trailing, comp)
    reader = reader_for(path)
    numbered = sum(1 for _ in reader.lines())
    assert reader.count_lines() == numbered
    assert count_rows([reader]) == [numbered]


def test_files_beyond_the_counting_budget_are_left_to_the_estimate(tmp_path):
    small = write_file_lines(tmp_path / "a.jsonl", 10)
    big = write_file_lines(tmp_path / "b.jsonl", 1000)
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(gzip.compress(big.read_bytes(), mtime=0))
    readers = [reader_for(p) for p in (small, big, gz)]
    budget = small.stat().st_size + 10
    assert count_rows(readers, plain_bytes=budget, compressed_bytes=gz.stat().st_size) == [10, None, 1000]
    assert count_rows(readers, plain_bytes=budget, compressed_bytes=gz.stat().st_size - 1) == [10, None, None]


def write_file_lines(path, n):
    path.write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(n)))
    return path


# ----------------------------------------------------------------------------- the document total


def _read_with_estimates(readers, rows, partition=None, limit=None):
    """Read every document as ``embed`` does, asking the estimate after each: (estimates, documents read)."""
    stats = ReadStats()
    total = DocumentTotal(rows, [r.size for r in readers], partition=partition, limit=limit)
    counts = [0] * len(readers)
    chars = [[0.0, 0.0] for _ in readers]
    index = {str(r.path): i for i, r in enumerate(readers)}
    current, estimates, n = 0, [], 0
    for _, (source, _, text, _) in iter_numbered_documents(readers, stats=stats, partition=partition):
        if limit is not None and n >= limit:
            break
        i = index[source]
        current = i
        counts[i] += 1
        chars[i][0] += len(text)
        chars[i][1] += len(text) ** 2
        n += 1
        seen = [FileSeen(counts[j], min(r.bytes_done, r.size), j < current, *chars[j]) for j, r in enumerate(readers)]
        estimates.append(total.estimate(seen))
    return estimates, n


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 60), min_size=1, max_size=4), count=st.integers(1, 3), block=st.integers(1, 8),
       data=st.data())
def test_counted_files_give_the_exact_total_from_the_first_document(tmp_path_factory, sizes, count, block, data):
    base = tmp_path_factory.mktemp("t")
    paths = []
    for i, n in enumerate(sizes):
        p = base / f"f{i}.jsonl"
        p.write_text("".join(json.dumps({"text": f"document {i} {j} " + "x" * (j % 7)}) + "\n" for j in range(n)))
        paths.append(p)
    index = data.draw(st.integers(0, count - 1))
    partition = Partitioning(count, index, block)
    readers = [reader_for(p) for p in paths]
    estimates, read = _read_with_estimates(readers, count_rows(readers), partition)
    assert read == partition.owned_in(0, sum(sizes))
    assert all(e.exact and e.value == read for e in estimates)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(50, 400), spread=st.integers(0, 200), seed=st.integers(0, 2**16))
def test_an_uncounted_file_is_estimated_within_its_stated_uncertainty_once_a_tenth_is_read(tmp_path_factory, n, spread,
                                                                                          seed):
    rng = random.Random(seed)
    p = tmp_path_factory.mktemp("u") / "big.jsonl"
    p.write_text("".join(json.dumps({"text": "w " * (5 + rng.randint(0, spread))}) + "\n" for _ in range(n)))
    readers = [reader_for(p)]
    estimates, read = _read_with_estimates(readers, [None])
    # the reader's position moves in steps (every 1024 lines) and runs ahead by its buffer: a small file
    # is "all read" at once, so its estimate is the documents seen, never unknown, never above the truth
    assert all(e.value is not None and not e.exact for e in estimates)
    assert estimates[-1].value == read


def test_an_uncounted_file_says_how_uncertain_its_estimate_is():
    total = DocumentTotal([None], [100_000])
    even = total.estimate([FileSeen(100, 10_000, False, 100 * 100.0, 100 * 100.0 ** 2)])  # every document 100 chars
    assert even.value == 1000 and even.uncertainty == 0.0 and not even.exact
    uneven = total.estimate([FileSeen(100, 10_000, False, 100 * 100.0, 100 * 2 * 100.0 ** 2)])  # cv = 1
    assert uneven.value == 1000 and uneven.uncertainty == pytest.approx(2 * 900 * np.sqrt(1 / 100 + 1 / 900) / 1000)
    assert "±19 %" in uneven.describe() and even.describe() == "total estimated ±0 %"
    assert DocumentTotal([None], [100]).estimate([FileSeen()]).value is None  # nothing read: unknown
    known = DocumentTotal([40, None], [100, 200])
    assert known.estimate([FileSeen(10, 30, False), FileSeen()]).value is None
    assert known.estimate([FileSeen(40, 100, True), FileSeen(5, 50, False, 50.0, 500.0)]).value == 40 + 20
    assert DocumentTotal([40], [100], limit=10).estimate([FileSeen()]) .value == 10


@pytest.mark.parametrize("read_share", [0.05, 0.25, 0.5])
def test_the_stated_uncertainty_of_a_byte_estimate_covers_the_truth(read_share):
    """Files of lognormal document sizes (cv about 1.3), the first ``read_share`` of each read: the truth lies
    within the stated ±(2 standard errors) in about 95 % of the files, and within twice it in all."""
    inside, outside_twice = 0, 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        chars = np.maximum(rng.lognormal(6, 1.0, 20_000).astype(np.int64), 1)
        line_bytes = chars + 14  # {"text": "..."} and the newline
        m = int(read_share * len(chars))
        seen = FileSeen(m, int(line_bytes[:m].sum()), False, float(chars[:m].sum()), float((chars[:m] ** 2).sum()))
        estimate = DocumentTotal([None], [int(line_bytes.sum())]).estimate([seen])
        error = abs(estimate.value - len(chars)) / len(chars)
        inside += error <= estimate.uncertainty
        outside_twice += error > 2 * estimate.uncertainty
    assert inside >= 0.85 * 60 and outside_twice == 0


# ----------------------------------------------------------------------------- ETAs against a fake clock


@settings(max_examples=200, deadline=None)
@given(tokens=st.lists(st.integers(1, 512), min_size=1, max_size=300), window=st.integers(1, 64),
       batches=st.integers(1, 8), rate=st.floats(10.0, 1e6), startup=st.floats(0.0, 500.0))
def test_encode_eta_is_exact_once_every_document_is_tokenized_and_the_startup_is_not_encoding(tokens, window, batches,
                                                                                              rate, startup):
    """A synthetic run: the reader and the model start up for ``startup`` s, then windows sorted longest
    first are encoded batch by batch at ``rate`` tokens/s."""
    total = len(tokens)
    eta = EncodeEta(start=0.0)
    now = startup
    for w0 in range(0, total, window):
        win = sorted(tokens[w0:w0 + window], reverse=True)
        eta.tokenized(len(win), sum(win), now)
        for b in range(batches):
            step = sum(win) / batches
            now += step / rate
            eta.encoded(len(win) / batches, step, now)
            assert eta.tokens_per_second() == pytest.approx(rate)  # the startup is not in the rate
            left = sum(tokens[w0 + len(win):]) + (batches - b - 1) * step
            if w0 + len(win) >= total:  # every document tokenized: the ETA is exact
                assert eta.seconds_left(total) == pytest.approx(left / rate, rel=1e-6, abs=1e-9)
    assert eta.seconds_left(total) == pytest.approx(0.0, abs=1e-6)


def test_a_stall_raises_the_eta_as_the_clock_runs():
    eta = EncodeEta(start=0.0)
    eta.tokenized(10, 1000, 0.0)
    eta.encoded(5, 500, 5.0)  # 100 tokens/s
    assert eta.seconds_left(10, now=5.0) == pytest.approx(5.0)
    assert eta.seconds_left(10, now=10.0) == pytest.approx(10.0)  # nothing done in 5 s: 50 tokens/s now
    work = WorkEta(1000.0)
    work.begin(2.0)
    work.advance(100.0, 3.0)
    assert work.seconds_left(3.0) == pytest.approx(9.0) and work.seconds_left(4.0) == pytest.approx(18.0)
    assert WorkEta(None).seconds_left(1.0) is None and WorkEta(10.0).seconds_left(1.0) is None
    resumed = WorkEta(1000.0, done_before=900.0)
    resumed.begin(0.0)
    resumed.advance(50.0, 1.0)
    assert resumed.seconds_left(1.0) == pytest.approx(1.0)
    assert rate_eta(100, 50, 0, 10.0) == 10.0 and rate_eta(100, 10, 10, 5.0) is None and rate_eta(None, 1, 0, 1) is None


def _synthetic_run(rng, n_docs, startup, cost_per_token, noise, drift=0.0):
    """(times at which each document finished, tokens of each): a run with a startup and a noisy per-token cost."""
    lengths = rng.integers(20, 400, n_docs)
    t = startup
    times = []
    for i, n in enumerate(lengths):
        factor = 1.0 + drift * (i / n_docs - 0.5)
        t += n * cost_per_token * factor * rng.uniform(1 - noise, 1 + noise)
        times.append(t)
    return np.array(times), lengths


@pytest.mark.parametrize("startup", [0.0, 60.0, 600.0])
def test_eta_error_at_a_quarter_half_and_three_quarters_of_a_synthetic_run(startup):
    """Windows of 64 documents, 8 batches each, iid document lengths, ±30 % noise per document: the ETA
    at 25/50/75 % of the documents is within 10 % of the real time left, whatever the startup time."""
    rng = np.random.default_rng(0)
    times, lengths = _synthetic_run(rng, 4096, startup, 1e-3, 0.3)
    eta = EncodeEta(start=0.0)
    checkpoints = {1024: None, 2048: None, 3072: None}
    for w0 in range(0, len(lengths), 64):
        win = lengths[w0:w0 + 64]
        eta.tokenized(len(win), int(win.sum()), times[w0 - 1] if w0 else startup)
        for b in range(8):
            end = w0 + (b + 1) * 8
            eta.encoded(8, float(win[b * 8:(b + 1) * 8].sum()), times[end - 1])
            if end in checkpoints:
                predicted = eta.seconds_left(len(lengths), now=times[end - 1])
                checkpoints[end] = predicted / (times[-1] - times[end - 1]) - 1
    assert all(abs(err) < 0.10 for err in checkpoints.values()), checkpoints


def test_the_tokenize_eta_follows_characters_not_documents():
    """The issue's bar: 8472 of 9638 documents done, but the documents left hold most of the characters."""
    chars = np.r_[np.full(8472, 100), np.full(1166, 5000)]  # 0.85 M characters done, 5.8 M left
    eta = WorkEta(float(chars.sum()))
    eta.begin(0.0)
    eta.advance(float(chars[:8472].sum()), 8.472)  # 100,000 characters/s
    assert eta.seconds_left(8.472) == pytest.approx(chars[8472:].sum() / 100_000)
    doc_eta = rate_eta(9638, 8472, 0, 8.472)  # what a bar counting documents said
    assert doc_eta == pytest.approx(1.166) and eta.seconds_left(8.472) > 40 * doc_eta


# ----------------------------------------------------------------------------- the bars


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_every_bar_redraws_its_eta_from_the_clock_and_logs_it(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.delenv("CLUSTERCLIP_NO_PROGRESS", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(progress, "_now", clock)
    monkeypatch.setenv(progress.PROGRESS_LOG, str(tmp_path / "log.jsonl"))
    monkeypatch.setattr(progress, "REFRESH_SECONDS", 3600.0)  # the test draws the ticks itself
    b = progress.bar(100, desc="work", unit="doc", enabled=True)
    try:
        clock.t += 10
        b.update(50)
        assert b.format_dict["eta"] == "0:10"
        clock.t += 10  # a stall: half the rate, twice the time left
        b.tick()
        assert b.format_dict["eta"] == "0:20"
    finally:
        b.close()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [(r["n"], r["eta"]) for r in records] == [(0, None), (50, 10.0), (50, 20.0), (50, 20.0)]
    assert records[-1]["final"] and not records[-2]["final"]


def test_a_disabled_bar_starts_no_thread(monkeypatch):
    monkeypatch.setenv("CLUSTERCLIP_NO_PROGRESS", "1")
    b = progress.bar(10, desc="quiet")
    assert b.disable and b._ticker is None
    b.close()


def test_the_embed_bar_moves_per_batch_and_ends_on_the_exact_count(tmp_path, monkeypatch):
    from clusterclip.embed import pipeline

    seen = []

    class Bar:
        def __init__(self, total=None, **kw):
            self.total, self.n = total, kw.get("initial", 0)
            self.eta = kw.get("eta")

        def update(self, k):
            self.n += k
            seen.append((self.n, self.total))

        def set_postfix_str(self, s, refresh=False):
            self.postfix = s

        def refresh(self):
            seen.append((self.n, self.total))

        def close(self):
            pass

    monkeypatch.setattr(pipeline, "progress_bar", lambda *a, **kw: Bar(*a, **kw))
    write_file(tmp_path / "c" / "a.jsonl", [f"doc {i}" for i in range(40)])
    embed_corpus([tmp_path / "c"], tmp_path / "emb", encoder=CountingEncoder(batches=4), window_docs=20,
                 progress=True)
    counts = [n for n, _ in seen]
    assert counts == sorted(counts) and len(set(counts)) >= 8  # 2 windows x 4 batches
    assert seen[-1] == (40, 40)
    assert all(total == 40 for _, total in seen)  # a counted file: the exact total from the first batch


def test_format_seconds():
    assert [format_seconds(s) for s in (None, float("nan"), float("inf"), 59.6, 3599, 3600)] == \
        ["?", "?", "?", "1:00", "59:59", "1:00:00"]
