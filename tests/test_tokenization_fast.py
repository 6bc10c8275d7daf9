"""The fast exact tokenization path, document pieces, and the fallback to Hugging Face."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tokenizer_families import SPECIALS, build_family, hf_ids, hf_reference

from clusterclip.tokens.fast import (
    TokenEncoder,
    cut_points,
    has_unassigned_code_points,
    is_class_cut,
    is_cut,
    normalizations_may_disagree,
    plan_encoder,
    split_document,
)
from clusterclip.tokens.tokenizer import load_tokenizer

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
    """(fast TokenEncoder, HF reference) per family; the fast one really is the fast backend."""
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


# --------------------------------------------------------------------------- fast == HF over Unicode
#: every family, with and without an NFC normalizer
VARIANTS = tuple((name, nfc) for name in ("gpt2", "cl100k", "o200k", "qwen2") for nfc in (False, True))

# marks that newer Unicode gave a combining class Hugging Face's NFC tables (older) do not know,
# next to marks of many classes, letters they compose with, right-to-left text, ZWJ emoji
# sequences, bidi and zero-width controls, C0/C1 controls, whitespace runs, Hangul jamo
UNICODE_FRAGMENTS = [
    "\u1df9", "\u1aca", "\u1ac1", "\u0898", "\u08d3", "\u07fd", "\u0c3c", "\U00010f46", "\U00011938",
    "\U00011935\U00011930", "\U0001e2ec", "\u0301", "\u0316", "\u0334", "\u0345", "\u05b5", "\u0651",
    "\u093c", "\u094d", "\u0e38", "\u3099", "\u0327", "\u1dfa", "e", "a", "f", "caf", " ok", "x", "y",
    "\u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd", "\u0645\u064e\u0631\u0652\u062d\u064e\u0628\u064b\u0627",
    "\u200f", "\u202e", "\u2066", "\u200d", "\ufe0f", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\U0001f3f3\ufe0f\u200d\U0001f308", "\U0001f469\U0001f3fd\u200d\U0001f4bb", "\U0001f1eb\U0001f1f7",
    "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\t\t", "   ", "\n\n\n", "\r\n", "\u3000\u3000", "\u00a0",
    "\u1100\u1161\u11a8", "\ud55c", "\U00020000", "\U0010fffd", "'s", "12345", "<|endoftext|>", "<tool_call>",
]
_ANY = st.characters(exclude_categories=("Cs",))
_MARKS = st.characters(categories=("Mn", "Mc", "Me"))
UNICODE_TEXT = st.lists(st.one_of(st.sampled_from(UNICODE_FRAGMENTS), st.text(_ANY, max_size=4),
                                  st.text(_MARKS, min_size=1, max_size=3),
                                  st.text(st.characters(min_codepoint=0x10000), max_size=2)),
                        max_size=16).map("".join)


@pytest.fixture(scope="module")
def variants(tmp_path_factory, texts):
    """(fast TokenEncoder, HF reference) per (family, with NFC); the fast one really is the fast backend."""
    root = tmp_path_factory.mktemp("variants")
    out = _Families()
    for name, nfc in VARIANTS:
        path = build_family(name, texts, root / f"{name}-{nfc}.json", nfc=nfc)
        tok = load_tokenizer(str(path))
        assert tok.backend == "gigatoken", (name, nfc, tok.fast_off)
        out[name, nfc] = (tok.encoder(), hf_reference(path))
    return out


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variant=st.sampled_from(VARIANTS), batch=st.lists(UNICODE_TEXT, min_size=1, max_size=3))
def test_fast_path_equals_tokenizers_over_unicode(variants, variant, batch):
    """Random Unicode (astral planes, combining marks old and new, RTL, ZWJ emoji, controls,
    whitespace runs): the fast path's tokens are Hugging Face's, for every family, with and
    without NFC."""
    fast, ref = variants[variant]
    assert fast.encode_lists(batch, parallel=False) == [hf_ids(ref, t) for t in batch]


@pytest.mark.parametrize("text", ["caf\u0301\u1df9 ok", "x\u1aca\u05b5y", "\U00011935\U00011930",
                                  "a\u0898\u0301"])
def test_marks_newer_than_hugging_faces_nfc_keep_its_order(variants, text):
    """Hugging Face's NFC does not know these marks' classes and keeps them in place; the fast
    path sends texts holding them to Hugging Face."""
    assert normalizations_may_disagree(text)
    for nfc in (False, True):
        fast, ref = variants["qwen2", nfc]
        assert fast.encode_lists([text, "plain " + text], parallel=False) == \
            [hf_ids(ref, text), hf_ids(ref, "plain " + text)]


def test_the_nfc_guard_leaves_ordinary_text_to_the_fast_path():
    for text in ["café", "cafe\u0301", "Tiếng Việt", "हिन्दी", "עִבְרִית", "مَرْحَبًا", "한국어", "日本語", "👩🏽\u200d💻"]:
        assert not normalizations_may_disagree(text), text
    assert normalizations_may_disagree("\u1df9") and normalizations_may_disagree("\U0001e4ec")  # Unicode 14, 15


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
@example(family="qwen2", text="<|endoftext|>  <tool_call>", piece_chars=1)  # two spaces before an added token
def test_pieces_encode_like_the_whole_document(encoders, family, text, piece_chars):
    """Cutting at cut_points never changes the tokens: HF per piece, and the fast path, == HF whole (the pieces
    cut as the encoder cuts them, knowing the added tokens)."""
    fast, ref, _ = encoders[family]
    pieces = split_document(text, piece_chars, fast.plan.class_cuts, fast.plan.added)
    assert "".join(pieces) == text
    # the stronger invariant, independent of what the vocabulary merges: the same pre-tokens
    assert [w for p in pieces for w in _pretokens(ref, p)] == _pretokens(ref, text)
    whole = hf_ids(ref, text)
    assert [i for p in pieces for i in hf_ids(ref, p)] == whole
    small = TokenEncoder(dataclasses.replace(fast.plan, piece_chars=piece_chars))
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


# ASCII of each class the third rule tells apart, "'", and what may follow or precede them
CLASS_CHARS = ["a", "Z", "1", "0", ".", "/", "_", "<", "=", "-", "'", "$", "é", "中", "١", " ", "\n", "\u0301", "\u0338"]


def test_every_class_cut_is_a_pre_token_boundary_for_every_family(variants):
    """Exhaustively over two characters each side of a cut: wherever the third rule allows a
    cut, the pre-tokens (after NFC, where the tokenizer has it) of the two sides are those of
    the whole, and the two sides' tokens are the whole's."""
    checked = 0
    for a, b, c, d in itertools.product(CLASS_CHARS, repeat=4):
        text = a + b + c + d
        if not is_class_cut(text, 2):
            continue
        checked += 1
        for (name, nfc), (fast, ref) in variants.items():
            if fast.plan.class_cuts is None:
                continue
            assert _pretokens(ref, text[:2]) + _pretokens(ref, text[2:]) == _pretokens(ref, text), (name, nfc, text)
            assert hf_ids(ref, text[:2]) + hf_ids(ref, text[2:]) == hf_ids(ref, text), (name, nfc, text)
    assert checked > 1000


DENSE_CLASSES = st.text(alphabet="aZ19./_<'=- \n\u0301\u0338é", max_size=60)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variant=st.sampled_from(VARIANTS), text=st.one_of(DENSE_CLASSES, UNICODE_TEXT),
       piece_chars=st.integers(1, 24))
def test_class_cut_pieces_encode_like_the_whole_document(variants, variant, text, piece_chars):
    """Pieces cut by every rule (the third where the plan allows it) encode to the whole's tokens."""
    fast, ref = variants[variant]
    small = TokenEncoder(dataclasses.replace(fast.plan, piece_chars=piece_chars))
    pieces = split_document(text, piece_chars, fast.plan.class_cuts, fast.plan.added)
    assert "".join(pieces) == text
    assert small.encode_lists([text], parallel=False) == [hf_ids(ref, text)]


def test_class_cuts_keep_added_tokens_whole(tmp_path, texts):
    path = build_family("cl100k", texts, tmp_path / "t.json")
    data = json.loads(path.read_text())
    data["added_tokens"].append({"id": 5000, "content": "<tool_call>", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": False, "special": False})
    plan = plan_encoder(json.dumps(data), piece_chars=8)
    assert plan.class_cuts == ("<tool_call>",)
    doc = "x<tool_call>1" * 50
    pieces = split_document(doc, 8, plan.class_cuts, plan.added)
    assert len(pieces) >= 25 and sum(p.count("<tool_call>") for p in pieces) == 50
    nfc = dict(data, normalizer={"type": "NFC"})
    assert plan_encoder(json.dumps(nfc)).class_cuts == ("<tool_call>",)
    nfc["added_tokens"][-1]["normalized"] = True
    assert plan_encoder(json.dumps(nfc)).class_cuts is None


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
        small = TokenEncoder(dataclasses.replace(fast.plan, piece_chars=4096))
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
    from clusterclip.tokens.build import build_token_store

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
    assert store.meta["backend"] == "hf" and store.meta["backend_reason"] == f"fast path off: {tok.fast_off}"


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


@pytest.mark.slow
def test_nfc_fast_path_equals_tokenizers_for_every_code_point(variants):
    """The proof of the NFC guard, end to end: every code point the guard lets through (not
    normalizations_may_disagree), alone, after and before marks of the lowest and highest
    combining class; every mark after and before a mark of each combining class; every
    canonical composition pair: the fast path's tokens are Hugging Face's, with an NFC
    normalizer. Probes are grouped, 32 to a text."""
    import unicodedata

    code_points = [chr(c) for c in range(0x110000)
                   if not 0xD800 <= c <= 0xDFFF and not normalizations_may_disagree(chr(c))]
    assert len(code_points) > 250_000
    marks = [c for c in code_points if unicodedata.combining(c)]
    by_class = {unicodedata.combining(c): c for c in reversed(marks)}
    assert len(by_class) > 50
    probes = [p for c in code_points for p in (f"x{c}", f"x\u0345{c}", f"x{c}\u0334", f"x\u0334{c}", f"x{c}\u0345")]
    probes += [f"x{r}{c}" for c in marks for r in by_class.values()]
    probes += [f"x{c}{r}" for c in marks for r in by_class.values()]
    for c in code_points:
        d = unicodedata.decomposition(c)
        if d and not d.startswith("<") and len(d.split()) == 2:
            pair = "".join(chr(int(h, 16)) for h in d.split())
            if not normalizations_may_disagree(pair):
                probes.append(pair)
    texts = [" ".join(probes[i:i + 32]) for i in range(0, len(probes), 32)]
    fast, ref = variants["o200k", True]
    got = fast.encode_lists(texts, parallel=True)
    want = [e.ids for e in ref.encode_batch_fast(texts, add_special_tokens=False)]
    bad = [t[:60] for t, a, b in zip(texts, got, want) if a != b]
    assert not bad, bad[:5]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["no-whitespace", "one-letter"])
def test_one_huge_document_without_spaces_costs_bounded_memory(tmp_path, family_paths, kind):
    """One 8 M-character document with no space or newline (docs/PERFORMANCE.md states the
    bound): text without whitespace is cut by the third rule, so the encoder holds one piece;
    a run of one letter (a single pre-token, which no exact encoder can cut) costs at most
    ~40 bytes per character. Before, the run checked the whole document against Hugging Face
    (its first 64 documents are checked), ~200 bytes per character: 1.7 GB here."""
    import subprocess
    import sys

    n = 8_000_000
    doc = f"('abc.def,12' * {n // 10})" if kind == "no-whitespace" else f"'a' * {n}"
    script = (
        "import tempfile\n"
        "from clusterclip.tokens.tokenizer import load_tokenizer\n"
        "from clusterclip.tokens.build import build_token_store\n"
        "def hwm():\n"
        "    return next(int(s.split()[1]) for s in open('/proc/self/status') if s.startswith('VmHWM')) // 1024\n"
        f"tok = load_tokenizer({str(family_paths['o200k'])!r})\n"
        "tok.encode_batch(['warm up'])\n"
        f"doc = {doc}\n"
        "base = hwm()\n"
        f"store = build_token_store(enumerate(['a short one', doc]), 2, tok, {str(tmp_path / 's')!r}, progress=False,"
        " workers=1)\n"
        "print(len(store.tokens(1)), hwm() - base)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    n_tokens, added_mib = map(int, result.stdout.split()[-2:])
    assert n_tokens > n // 4
    if kind == "no-whitespace":  # the text twice, ~25 bytes per token, one piece's working set
        assert added_mib < (2 * n + 25 * n_tokens) / 2**20 + 64, added_mib
    else:
        assert added_mib < 40 * n / 2**20 + 64, added_mib


def test_the_plans_process_loads_the_fast_tokenizer_once(family_paths, monkeypatch, texts):
    """plan_encoder loads gigatoken's tokenizer to check it; the first encoder of that plan in this process
    takes it instead of loading the file again, and encodes exactly as one that loaded its own."""
    import clusterclip.tokens.fast as fast

    loads = []
    real = fast._load_fast
    monkeypatch.setattr(fast, "_load_fast", lambda j: loads.append(j) or real(j))
    plan = plan_encoder(Path(family_paths["qwen2"]).read_text())
    first, second = TokenEncoder(plan), TokenEncoder(plan)
    assert len(loads) == 2 and first.backend == second.backend == "gigatoken"
    batch = texts[:20]
    assert first.encode_arrays(batch).ids.tolist() == second.encode_arrays(batch).ids.tolist()
