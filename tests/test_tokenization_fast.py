"""The fast exact tokenization path, document pieces, and the fallback to Hugging Face."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizer_families import SPECIALS, build_family, hf_ids, hf_reference

from clusterclip.fast_tokenizer import (
    Encoder,
    cut_points,
    has_unassigned_code_points,
    is_cut,
    plan_encoder,
    split_document,
)
from clusterclip.tokenization import load_tokenizer

from shards_testlib import stdlib_docstrings, train_tokenizer

FAMILIES = ("demo", "cl100k", "o200k", "qwen2")

# pieces of text where tokenizers differ: special-token strings, contractions, whitespace
# runs of every kind, newlines, emoji (with modifiers and flags), CJK, combining marks,
# letters that change under NFC, digits of several scripts, punctuation runs, NUL
FRAGMENTS = [
    *SPECIALS, "<tool_call>", "'s", "'LL", "'ve", "'d", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", " \n",
    "\n ", "\u00a0", "\u3000", "\u2028", "\x85", "\x0b", "\x0c", "\x1c", "😀", "👍🏽", "🇫🇷", "中文", "日本語",
    "한국어", "é", "e\u0301", "\u0301", "ǅ", "ß", "İ", "Ⅻ", "½", "١٢٣", "1234567", "Hello", "world", "ABC", "def",
    "_", "/", "//", "...", "“quoted”", "a/b", "$", "\u200b", "\ufeff", "\x00", "\u212b", "ﬁ",
]
# dense in the characters that decide pre-token boundaries: letters of each case, digits,
# each kind of whitespace, punctuation that regexes treat apart ("/", "'"), a combining mark
DENSE = st.text(alphabet="aZs1 \n\r\t/.'\u0301中\u00a0", max_size=40)
TEXT = st.one_of(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=24).map("".join),
                 DENSE)


@pytest.fixture(scope="module")
def texts():
    return stdlib_docstrings(200)


@pytest.fixture(scope="module")
def family_paths(tmp_path_factory, texts):
    root = tmp_path_factory.mktemp("families")
    paths = {"demo": train_tokenizer(root / "demo.json", texts, vocab_size=1200)}
    for name in FAMILIES[1:]:
        paths[name] = build_family(name, texts, root / f"{name}.json")
    return paths


@pytest.fixture(scope="module")
def encoders(family_paths):
    """(fast Encoder, HF reference) per family; the fast one really is the fast backend."""
    out = _Families()
    for name, path in family_paths.items():
        tok = load_tokenizer(str(path))
        assert tok.backend == "gigatoken", (name, tok.fast_off)
        out[name] = (tok.encoder(), hf_reference(path), tok)
    return out


class _Families(dict):
    def __repr__(self) -> str:  # keeps hypothesis' failure reports short
        return f"<encoders of {', '.join(self)}>"


# --------------------------------------------------------------------------- fast == HF
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family=st.sampled_from(FAMILIES), batch=st.lists(TEXT, min_size=1, max_size=4))
def test_fast_path_equals_tokenizers(encoders, family, batch):
    fast, ref, _ = encoders[family]
    assert fast.encode_lists(batch, parallel=False) == [hf_ids(ref, t) for t in batch]


def test_fast_path_equals_tokenizers_on_real_text(encoders, texts):
    for _fast, ref, tok in encoders.values():
        assert tok.encode_batch(texts) == [hf_ids(ref, t) for t in texts]


def test_special_token_strings_are_plain_text_in_the_fast_path(encoders):
    for _fast, _ref, tok in encoders.values():
        for special in SPECIALS:
            ids = tok.encode(f"a {special} b")
            assert tok._tok.token_to_id(special) not in ids and tok.decode(ids) == f"a {special} b"


def test_describe_records_the_backend(family_paths):
    tok = load_tokenizer(str(family_paths["demo"]))
    assert tok.describe()["backend"] == "gigatoken" and "backend" not in tok.describe(with_backend=False)
    slow = load_tokenizer(str(family_paths["demo"]), fast=False)
    assert slow.backend == "hf" and slow.describe()["backend"] == "hf"
    assert slow.describe(with_backend=False) == tok.describe(with_backend=False)


# --------------------------------------------------------------------------- pieces
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family=st.sampled_from(FAMILIES), text=TEXT, piece_chars=st.integers(1, 40))
def test_pieces_encode_like_the_whole_document(encoders, family, text, piece_chars):
    """Cutting at cut_points never changes the tokens: HF per piece, and the fast path, == HF whole."""
    fast, ref, _ = encoders[family]
    pieces = split_document(text, piece_chars)
    assert "".join(pieces) == text
    # the stronger invariant, independent of what the vocabulary merges: the same pre-tokens
    assert [w for p in pieces for w in _pretokens(ref, p)] == _pretokens(ref, text)
    whole = hf_ids(ref, text)
    assert [i for p in pieces for i in hf_ids(ref, p)] == whole
    small = Encoder(dataclasses.replace(fast.plan, piece_chars=piece_chars))
    assert small.encode_lists([text, text[::-1]], parallel=False) == [whole, hf_ids(ref, text[::-1])]


# one or more characters of each class the pre-tokenizer regexes tell apart
CLASSES = ["a", "Z", "é", "中", "ǅ", "ß", "1", "١", "Ⅻ", ".", ";", "'", "/", "(", "_", "$", "😀", "\u0301", " ", "\t",
           "\n", "\r", "\u00a0", "\x1c", "\u2028", "\x85"]
CONTEXTS = ["", "a", " ", "  ", "1", ".", "\n", "'s", "/", "\r\n"]


def test_every_cut_is_a_pre_token_boundary_for_every_family(encoders):
    """Exhaustively over character classes around a cut and the text around them: wherever
    is_cut allows a cut, the pre-tokens of the two sides are those of the whole."""
    checked = 0
    for x in CLASSES:
        for y in CLASSES:
            for left_ctx in CONTEXTS:
                for right_ctx in CONTEXTS:
                    for middle in ("\n", " "):
                        left, right = left_ctx + x + (middle if middle == "\n" else ""), \
                            (middle if middle == " " else "") + y + right_ctx
                        text = left + right
                        if not is_cut(text, len(left)):
                            continue
                        checked += 1
                        for _fast, ref, _ in encoders.values():
                            assert _pretokens(ref, left) + _pretokens(ref, right) == _pretokens(ref, text), \
                                (left, right)
    assert checked > 1000  # the rules do allow cuts in many of these contexts


def _pretokens(ref, text: str) -> list[str]:
    if ref.normalizer is not None:
        text = ref.normalizer.normalize_str(text)
    return [w for w, _ in ref.pre_tokenizer.pre_tokenize_str(text)]


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.sampled_from(["alpha", "Beta", "x", "42", "(a)", "é", "中文", "  ", "\n", "\n\n", "\t"]),
                      min_size=50, max_size=400), piece_chars=st.integers(8, 64))
def test_cut_points_make_short_pieces(words, piece_chars):
    """Text with cut opportunities is cut into pieces that are not longer than asked,
    except where a stretch of text has no cut point."""
    text = " ".join(words)
    cuts = cut_points(text, piece_chars)
    bounds = [0, *cuts, len(text)]
    assert cuts == sorted(set(cuts)) and all(0 < c < len(text) and is_cut(text, c) for c in cuts)
    for a, b in itertools.pairwise(bounds):
        if b - a > piece_chars:  # only where no cut point lies inside the piece
            assert not cut_points(text[a:b], piece_chars) or b == len(text)


def test_a_huge_document_is_cut_and_encoded_exactly(encoders, texts):
    doc = "\n".join(texts) * 3
    for name in ("demo", "o200k"):
        fast, ref, _ = encoders[name]
        pieces = split_document(doc, 4096)
        assert len(pieces) > len(doc) // 8192 and max(map(len, pieces)) <= 4096
        small = Encoder(dataclasses.replace(fast.plan, piece_chars=4096))
        assert small.encode_lists([doc], parallel=True) == [hf_ids(ref, doc)]


def test_tokenizers_that_cannot_be_cut_are_encoded_whole(tmp_path, texts):
    p = build_family("cl100k", texts, tmp_path / "t.json")
    data = json.loads(p.read_text())
    data["added_tokens"].append({"id": 5000, "content": " def", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": False, "special": False})
    plan = plan_encoder(json.dumps(data))
    assert plan.piece_chars is None and plan.fast_json is not None
    assert split_document("x\ny " * 100, plan.piece_chars) == ["x\ny " * 100]


# --------------------------------------------------------------------------- fallback
def _wordpiece(path: Path, texts) -> Path:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=500, special_tokens=["[UNK]", "[EOS]"],
                                                             show_progress=False))
    tok.save(str(path))
    return path


@pytest.mark.parametrize("kind", ["wordpiece", "nfkc", "unknown-regex", "prefix-space"])
def test_unsupported_tokenizers_fall_back_and_say_so(tmp_path, texts, kind, capsys):
    from clusterclip.token_store import build_token_store

    if kind == "wordpiece":
        path = _wordpiece(tmp_path / "t.json", texts)
    else:
        path = build_family("cl100k", texts, tmp_path / "t.json")
        data = json.loads(path.read_text())
        if kind == "nfkc":
            data["normalizer"] = {"type": "NFKC"}
        elif kind == "unknown-regex":
            data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|[^\p{L}]"
        else:
            data["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                                     "use_regex": True}
        path.write_text(json.dumps(data))
    tok = load_tokenizer(str(path), eos_token="[EOS]" if kind == "wordpiece" else None)
    assert tok.backend == "hf" and tok.fast_off and "\n" not in tok.fast_off
    docs = texts[:30]
    store = build_token_store(enumerate(docs), len(docs), tok, tmp_path / "s", progress=False, workers=1)
    err = capsys.readouterr().err
    assert f"fast tokenizer off: {tok.fast_off}; encoding with Hugging Face" in err
    ref = hf_reference(path)
    assert [store.tokens(i).tolist() for i in range(len(docs))] == [hf_ids(ref, t) for t in docs]
    assert store.meta["backend"] == "hf"


@pytest.mark.slow
def test_fast_path_equals_tokenizers_for_every_code_point(encoders):
    """Every Unicode code point, after a letter, before a contraction and a digit: the Unicode
    tables of the two libraries differ (gigatoken reads a newer version), and where they do
    the guard sends the text to Hugging Face. o200k's regex tells the most classes apart.
    The code points the guard does not send away are grouped, 32 to a text."""
    code_points = [chr(c) for c in range(0x110000)
                   if not 0xD800 <= c <= 0xDFFF and not has_unassigned_code_points(chr(c))]
    assert len(code_points) > 250_000  # every assigned code point: the guard sends only the others away
    texts = ["".join(f"x{c}'s {c}1\n" for c in code_points[i:i + 32]) for i in range(0, len(code_points), 32)]
    fast, ref, _ = encoders["o200k"]
    got = fast.encode_lists(texts, parallel=True)
    want = [e.ids for e in ref.encode_batch_fast(texts, add_special_tokens=False)]
    bad = [t[:40] for t, a, b in zip(texts, got, want) if a != b]
    assert not bad, bad[:5]
