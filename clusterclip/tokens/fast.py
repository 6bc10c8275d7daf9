"""Exact encoders for the token store: the Hugging Face reference and a faster twin.

An :class:`EncoderPlan` is made once from a tokenizer's ``tokenizer.json`` text
(:func:`plan_encoder`); it is plain data, so worker processes build the same
:class:`TokenEncoder` from it. The plan says

* whether the fast backend (``gigatoken``, byte-level BPE with Hugging Face merge
  semantics) may run this tokenizer. It may only when every part of the configuration is
  in :data:`ALLOW_LIST` (model, normalizer, pre-tokenizer, added-token flags), each row of
  which a property test proves equal to ``tokenizers`` over drawn configurations and texts
  (tests/test_tokenization_allowlist.py); anything else runs on Hugging Face ``tokenizers``,
  and :attr:`EncoderPlan.fast_off` says why. The fast backend gets the same JSON with the
  normalizer in its plain spelling, only the non-special added tokens, with the ids and
  flags ``tokenizers`` resolved for them (it renumbers ids written in the file, gives a
  content of the vocabulary the vocabulary's id, and takes a content listed as special
  anywhere as special), and without the post-processor, which is what Hugging Face does with
  ``encode_special_tokens = True`` and ``add_special_tokens=False``: special-token strings
  inside a document are plain text and nothing is added. The token store also checks the two
  on a sample of every run's documents (``verify`` of :meth:`TokenEncoder.encode_arrays`)
  and falls back on any difference.
* whether long documents may be cut into pieces that are encoded separately
  (:func:`split_document`). A cut is made only where every supported pre-tokenizer
  provably ends one pre-token and starts the next with no look-behind or look-ahead
  across the cut, so the pieces' tokens, concatenated, are the whole document's tokens:

  - after a newline between two non-whitespace characters, the second not "/"
    (``"x\\n|y"``): no alternative of these regexes matches a newline followed by a
    non-whitespace character other than o200k's ``[\\r\\n/]*`` with "/", so a pre-token
    ends after the newline; the newline's pre-token is the same whether or not the text
    goes on (GPT-2's ``\\s+`` or, at the end of a piece, ``\\s+(?!\\S)`` take the lone
    newline; the others' ``\\s*[\\r\\n]+`` or ``?[^\\s\\p{L}\\p{N}]+[\\r\\n]*`` stop
    there either way);
  - before a space that precedes a non-whitespace character y, when the character x before
    the space is not whitespace (``"x| y"``) or is a space as well (``"x  | y"``): spaces
    occur in these regexes only as an optional first character or in whitespace runs, so a
    pre-token starts at that space; before it, either x ends a pre-token, or the whitespace
    run up to x is one pre-token, made by ``\\s+(?!\\S)`` (all but the run's last space,
    or, at the end of a piece, the whole rest of the run: the same characters) after, in
    the cl100k-like families, ``\\s*[\\r\\n]+`` took the run's newlines.

  Only where a stretch of more than ``piece_chars`` characters has neither (minified code,
  base64, text without spaces) a third rule applies:

  - between two ASCII characters x|y, neither whitespace nor "'", of different classes among
    letter, digit and punctuation, except punctuation|letter (``"a|1"``, ``"1|a"``, ``"a|."``,
    ``"1|."``, ``".|1"``): every alternative of these regexes that takes a letter or digit run
    takes only that class (with at most one character before it, which is not the other
    class), no alternative reaches over a letter or digit from punctuation, and "'" (the
    contractions) is left out, so a pre-token ends at x and the next starts at y, in the
    text before NFC as after (ASCII is never composed into what precedes it; y composed with
    the marks after it stays of its class). The cut must not split an occurrence of a
    non-special added token (checked); the rule is off where such a token is matched after
    normalization (``normalized``) in an NFC tokenizer.

  An exhaustive test checks the rules for every family over each character class on
  either side and the text around them (tests/test_tokenization_fast.py).
  NFC cannot change these characters or compose across a newline or space. Added
  (non-special) tokens that contain whitespace or strip it would cross cuts, so a
  tokenizer with such tokens is never cut. Tokenizers that cannot be cut are encoded
  whole (their memory then grows with the document).

Memory: a piece is at most :data:`PIECE_CHARS` characters unless the text offers no cut
point (a run of that many characters with none of the rules: one pre-token, such as a
run of one letter, or CJK text without spaces, punctuation or newlines), so encoding holds
one piece's working memory, which is what makes a single huge document cost bounded memory.
A piece that cannot be cut is one pre-token or a run of them without any of these
boundaries; it is encoded whole, by the fast backend (about 20-75 bytes per character at
its peak) or, where it must be, by Hugging Face (about 200 per character), and it is not
verified against Hugging Face when longer than ``piece_chars`` (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

#: the fast backend's name as it appears in ``Tokenizer.backend`` and the manifest
FAST_BACKEND = "gigatoken"
HF_BACKEND = "hf"

#: documents longer than this (characters) are cut into pieces about this long
PIECE_CHARS = 1 << 18

#: the fast backend caches every distinct pre-token it has seen; past this growth of
#: the process's resident memory it is rebuilt (the cache is per tokenizer object)
FAST_CACHE_BUDGET = 512 << 20

_GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_CL100K = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
           r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
_QWEN2 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
          r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
_O200K = (r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"""
          r"""|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"""
          r"""|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

#: pre-tokenizer regexes (as written in ``tokenizer.json``) that the document cutter is proven
#: for (GPT-2's as ``ByteLevel(use_regex=true)``, the others as a ``Split``)
PRETOKENIZER_FAMILIES = {"gpt2": _GPT2, "cl100k": _CL100K, "qwen2": _QWEN2, "o200k": _O200K}

# Candidates for the two cut rules, found by the C regex engine; each is then checked
# exactly (``_newline_cut``, ``_space_cut``).
_NEWLINE_CANDIDATE = re.compile(r"\S\n(?=[^\s/])")  # cut at m.start() + 2
_SPACE_CANDIDATE = re.compile(r"[\S ](?= \S)")  # cut at m.start() + 1
_P = r"!-&(-/:-@\[-`{-~"  # ASCII punctuation but "'"
_CLASS_CANDIDATE = re.compile(rf"[A-Za-z](?=[0-9{_P}])|[0-9](?=[A-Za-z{_P}])|[{_P}](?=[0-9])")  # m.start() + 1


# Code points whose Unicode properties the fast backend reads from a newer Unicode than
# Hugging Face's regex engine (gigatoken 0.10: Unicode 17); a scan of every code point in
# several contexts found differences only for code points that Python 3.11's database
# (Unicode 14) lists as unassigned. A piece holding a code point from U+0800 up that is
# unassigned for Python, or assigned in Unicode 15.0 to 17.0 (these ranges, so that a Python
# with a newer database flags the same ones), is encoded by Hugging Face.
_NEWER_UNICODE = (
    (0x088F, 0x088F), (0x0897, 0x0897), (0x0C5C, 0x0C5C), (0x0CDC, 0x0CDC), (0x0CF3, 0x0CF3),
    (0x0ECE, 0x0ECE), (0x1ACF, 0x1ADD), (0x1AE0, 0x1AEB), (0x1B4E, 0x1B4F), (0x1B7F, 0x1B7F),
    (0x1C89, 0x1C8A), (0x20C1, 0x20C1), (0x2427, 0x2429), (0x2B96, 0x2B96), (0x2FFC, 0x2FFF),
    (0x31E4, 0x31E5), (0x31EF, 0x31EF), (0xA7CB, 0xA7CF), (0xA7D2, 0xA7D2), (0xA7D4, 0xA7D4),
    (0xA7DA, 0xA7DC), (0xA7F1, 0xA7F1), (0xFBC3, 0xFBD2), (0xFD90, 0xFD91), (0xFDC8, 0xFDCE),
    (0x105C0, 0x105F3), (0x10940, 0x10959), (0x10D40, 0x10D65), (0x10D69, 0x10D85), (0x10D8E, 0x10D8F),
    (0x10EC2, 0x10EC7), (0x10ED0, 0x10ED8), (0x10EFA, 0x10EFF), (0x1123F, 0x11241), (0x11380, 0x11389),
    (0x1138B, 0x1138B), (0x1138E, 0x1138E), (0x11390, 0x113B5), (0x113B7, 0x113C0), (0x113C2, 0x113C2),
    (0x113C5, 0x113C5), (0x113C7, 0x113CA), (0x113CC, 0x113D5), (0x113D7, 0x113D8), (0x113E1, 0x113E2),
    (0x116D0, 0x116E3), (0x11B00, 0x11B09), (0x11B60, 0x11B67), (0x11BC0, 0x11BE1), (0x11BF0, 0x11BF9),
    (0x11DB0, 0x11DDB), (0x11DE0, 0x11DE9), (0x11F00, 0x11F10), (0x11F12, 0x11F3A), (0x11F3E, 0x11F5A),
    (0x1342F, 0x1342F), (0x13439, 0x13455), (0x13460, 0x143FA), (0x16100, 0x16139), (0x16D40, 0x16D79),
    (0x16EA0, 0x16EB8), (0x16EBB, 0x16ED3), (0x16FF2, 0x16FF6), (0x187F8, 0x187FF), (0x18CFF, 0x18CFF),
    (0x18D09, 0x18D1E), (0x18D80, 0x18DF2), (0x1B132, 0x1B132), (0x1B155, 0x1B155), (0x1CC00, 0x1CCFC),
    (0x1CD00, 0x1CEB3), (0x1CEBA, 0x1CED0), (0x1CEE0, 0x1CEF0), (0x1D2C0, 0x1D2D3), (0x1DF25, 0x1DF2A),
    (0x1E030, 0x1E06D), (0x1E08F, 0x1E08F), (0x1E4D0, 0x1E4F9), (0x1E5D0, 0x1E5FA), (0x1E5FF, 0x1E5FF),
    (0x1E6C0, 0x1E6DE), (0x1E6E0, 0x1E6F5), (0x1E6FE, 0x1E6FF), (0x1F6D8, 0x1F6D8), (0x1F6DC, 0x1F6DC),
    (0x1F774, 0x1F77F), (0x1F7D9, 0x1F7D9), (0x1F8B2, 0x1F8BB), (0x1F8C0, 0x1F8C1), (0x1F8D0, 0x1F8D8),
    (0x1FA54, 0x1FA57), (0x1FA75, 0x1FA77), (0x1FA87, 0x1FA8A), (0x1FA8E, 0x1FA8F), (0x1FAAD, 0x1FAAF),
    (0x1FABB, 0x1FABF), (0x1FAC6, 0x1FAC6), (0x1FAC8, 0x1FAC8), (0x1FACD, 0x1FACF), (0x1FADA, 0x1FADC),
    (0x1FADF, 0x1FADF), (0x1FAE8, 0x1FAEA), (0x1FAEF, 0x1FAEF), (0x1FAF7, 0x1FAF8), (0x1FBCB, 0x1FBEF),
    (0x1FBFA, 0x1FBFA), (0x2B739, 0x2B73F), (0x2CEA2, 0x2CEAD), (0x2EBF0, 0x2EE5D), (0x31350, 0x33479),
)
_BEYOND_U0800 = re.compile("[\u0800-\U0010ffff]")  # every code point above is in the ranges
_unassigned_cache: dict[str, bool] = {}


def _unassigned(c: str) -> bool:
    hit = _unassigned_cache.get(c)
    if hit is None:
        o = ord(c)
        hit = unicodedata.category(c) == "Cn" or any(a <= o <= b for a, b in _NEWER_UNICODE)
        if len(_unassigned_cache) < 1 << 20:
            _unassigned_cache[c] = hit
    return hit


# Code points on which Hugging Face's NFC (its ``unicode-normalization-alignments`` tables,
# about Unicode 10) and the NFC of Unicode 17 (gigatoken's) disagree: combining marks added
# since, which Hugging Face takes for class-0 characters that stop canonical reordering and
# composition ("caf\u0301\u1df9": Hugging Face keeps the order, Unicode 17 puts U+1DF9,
# class 220, first), and the characters of the compositions it does not know (Dives Akuru
# U+11935 U+11930 -> U+11938, Tulu-Tigalari, Kirat Rai...). Found by an exhaustive scan of
# Hugging Face's normalizer against the Unicode 17 database (``unicodedata2`` 17.0): every
# code point alone and after and before a mark of each combining class, every canonical
# composition pair. Outside these, the two tables agree on every property NFC reads of a
# character (combining class, decomposition, composition), and NFC is a function of those
# properties of the text's characters, so the normalized texts are equal. Texts holding one
# of them go to Hugging Face when the tokenizer normalizes with NFC; tests/test_tokenization_fast.py
# checks every code point outside them against Hugging Face, end to end.
_NFC_DISAGREE = (
    (0x07FD, 0x07FD), (0x0897, 0x089F), (0x08CA, 0x08D3), (0x09FE, 0x09FE), (0x0C3C, 0x0C3C),
    (0x0D3B, 0x0D3C), (0x0EBA, 0x0EBA), (0x1715, 0x1715), (0x1ABF, 0x1ADD), (0x1AE0, 0x1AEB),
    (0x1DF6, 0x1DFA), (0xA82C, 0xA82C), (0x105C9, 0x105C9), (0x105D2, 0x105D2), (0x105DA, 0x105DA),
    (0x105E4, 0x105E4), (0x10D24, 0x10D27), (0x10D69, 0x10D6D), (0x10EAB, 0x10EAC), (0x10EFA, 0x10EFB),
    (0x10EFD, 0x10EFF), (0x10F46, 0x10F50), (0x10F82, 0x10F85), (0x11070, 0x11070), (0x1133B, 0x1133B),
    (0x11382, 0x11385), (0x1138B, 0x1138B), (0x1138E, 0x1138E), (0x11390, 0x11391), (0x113B8, 0x113B8),
    (0x113BB, 0x113BB), (0x113C2, 0x113C2), (0x113C5, 0x113C5), (0x113C7, 0x113C9), (0x113CE, 0x113D0),
    (0x1145E, 0x1145E), (0x11839, 0x1183A), (0x11930, 0x11930), (0x11935, 0x11935), (0x11938, 0x11938),
    (0x1193D, 0x1193E), (0x11943, 0x11943), (0x119E0, 0x119E0), (0x11A34, 0x11A34), (0x11A47, 0x11A47),
    (0x11A99, 0x11A99), (0x11D42, 0x11D42), (0x11D44, 0x11D45), (0x11D97, 0x11D97), (0x11F41, 0x11F42),
    (0x1611E, 0x16129), (0x1612F, 0x1612F), (0x16D63, 0x16D63), (0x16D67, 0x16D6A), (0x16FF0, 0x16FF1),
    (0x1E08F, 0x1E08F), (0x1E130, 0x1E136), (0x1E2AE, 0x1E2AE), (0x1E2EC, 0x1E2EF), (0x1E4EC, 0x1E4EF),
    (0x1E5EE, 0x1E5EF), (0x1E6E3, 0x1E6E3), (0x1E6E6, 0x1E6E6), (0x1E6EE, 0x1E6EF), (0x1E6F5, 0x1E6F5),
)
# the regex engine tests a character class of BMP ranges in one bitmap lookup, but astral
# ranges one by one: the astral ones are looked up in a set, for the characters in their span
_NFC_BMP_RE = re.compile("[" + "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in _NFC_DISAGREE if b <= 0xFFFF) + "]")
_NFC_ASTRAL = frozenset(chr(c) for a, b in _NFC_DISAGREE if a > 0xFFFF for c in range(a, b + 1))
_NFC_ASTRAL_SPAN = re.compile(f"[{min(_NFC_ASTRAL)}-{max(_NFC_ASTRAL)}]")


def normalizations_may_disagree(text: str) -> bool:
    """Does ``text`` hold a code point the two backends' NFC may treat differently (see above)?"""
    if text.isascii():
        return False
    if _NFC_BMP_RE.search(text) is not None:
        return True
    if any(m.group() in _NFC_ASTRAL for m in _NFC_ASTRAL_SPAN.finditer(text)):
        return True
    return has_unassigned_code_points(text)


def has_unassigned_code_points(text: str) -> bool:
    """Does ``text`` hold a code point the two backends may read differently (see above)?"""
    if text.isascii() or not _BEYOND_U0800.search(text):
        return False
    return any(_unassigned(c) for c in set(text) if c >= "\u0800")


@dataclass(frozen=True)
class EncoderPlan:
    """How one tokenizer is encoded; plain data (picklable) for worker processes.

    ``hf_json``: the reference ``tokenizer.json`` text. ``fast_json``: what the fast
    backend loads, or None when it does not run (``fast_off`` says why).
    ``family``: the pre-tokenizer family, or None. ``piece_chars``: documents longer
    than this are cut into pieces (see the module docstring), None: never cut. ``nfc``: the
    tokenizer normalizes with NFC (texts the two NFCs may disagree on go to Hugging Face).
    ``class_cuts``: the third cut rule applies, and must not split these added tokens
    (None: it does not apply).
    """

    hf_json: str
    fast_json: str | None
    fast_off: str | None
    family: str | None
    piece_chars: int | None
    nfc: bool = False
    class_cuts: tuple[str, ...] | None = None
    added: tuple[str, ...] = ()

    @property
    def backend(self) -> str:
        return FAST_BACKEND if self.fast_json is not None else HF_BACKEND

    def without_fast(self, reason: str) -> EncoderPlan:
        return replace(self, fast_json=None, fast_off=reason)


# ---------------------------------------------------------------------------- the allow-list
#: What the fast backend runs: a tokenizer takes the fast path only when every part of its
#: ``tokenizer.json`` is one of these (anything else, or anything not listed, is encoded by
#: Hugging Face ``tokenizers``, and :attr:`EncoderPlan.fast_off` names the first part that is
#: not). Each row is proven equal to ``tokenizers`` by a property test that draws the
#: configuration and the text together (tests/test_tokenization_allowlist.py).
ALLOW_LIST: tuple[tuple[str, str], ...] = (
    ("model", "BPE without dropout, byte_fallback, continuing_subword_prefix or end_of_word_suffix, "
              "ignore_merges true or false, the byte-level character of every byte UTF-8 text holds in the vocabulary"),
    ("normalizer", "none, an empty Sequence, NFC, or Sequence[NFC]"),
    ("pre_tokenizer", "ByteLevel(add_prefix_space=false, use_regex=true) (GPT-2), or Sequence[Split(regex, "
                      "Isolated, invert=false)..., ByteLevel(add_prefix_space=false, use_regex=false)] with the "
                      "Split regexes of cl100k / Llama-3, Qwen2, o200k, or DeepSeek-V3's three; or DeepSeek-LLM's "
                      "Sequence (five Splits, Digits, ByteLevel), pre-tokenized by clusterclip.tokens.pretok, with "
                      "single-character non-special added tokens"),
    ("added tokens (non-special)", "single_word, lstrip and rstrip false; normalized false, or either when the "
                                   "normalizer is none or an empty Sequence (under NFC, a text NFC changes goes to "
                                   "tokenizers); any content and id (the fast path gets the ids tokenizers assigns: "
                                   "the vocabulary's for a content in it)"),
    ("special tokens", "any flags (they are plain text in documents), unless one of them contains a non-special "
                       "token's content or ends with its beginning (tokenizers then skips the non-special one)"),
    ("decoder, post_processor, truncation, padding", "anything (not used: no special tokens added, no truncation)"),
)

#: Split regexes (as written in ``tokenizer.json``) of the families the fast path runs,
#: as a Sequence[Split..., ByteLevel]
SPLIT_FAMILIES: dict[str, tuple[str, ...]] = {
    "cl100k": (_CL100K,), "qwen2": (_QWEN2,), "o200k": (_O200K,),
    "deepseek_v3": (r"\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
                    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
                    "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"),
}
#: families whose pre-tokens the document cutter is proven for (module docstring)
CUTTABLE_FAMILIES = frozenset(PRETOKENIZER_FAMILIES)

#: pre-tokenizers run by .pretok (DeepSeek-LLM's)
_OWN_PRETOKENIZERS = True

_IDENTITY_NORMALIZERS = (None, {"type": "Sequence", "normalizers": []})
_NFC_NORMALIZERS = ({"type": "NFC"}, {"type": "Sequence", "normalizers": [{"type": "NFC"}]})


def plan_encoder(hf_json: str, *, fast: bool = True, piece_chars: int | None = None, hf=None) -> EncoderPlan:
    """The plan for the tokenizer whose ``tokenizer.json`` text is ``hf_json``.

    ``piece_chars``: cut documents longer than this (default :data:`PIECE_CHARS`). ``hf``:
    the ``tokenizers.Tokenizer`` loaded from ``hf_json``, when the caller has it (the added
    tokens are taken from it, as ``tokenizers`` resolved them).
    """
    from tokenizers import Tokenizer as HFTokenizer

    piece_chars = PIECE_CHARS if piece_chars is None else piece_chars
    data = json.loads(hf_json)
    hf = HFTokenizer.from_str(hf_json) if hf is None else hf
    family, why_not = _family(data)
    plain, added_why_not = _plain_added_tokens(data, hf)
    why_not = why_not or added_why_not
    nfc = data.get("normalizer") in _NFC_NORMALIZERS
    cuttable = family in CUTTABLE_FAMILIES and why_not is None and _added_tokens_allow_cuts(plain)
    plan = EncoderPlan(hf_json=hf_json, fast_json=None, fast_off=why_not, family=family,
                       piece_chars=piece_chars if cuttable else None, nfc=nfc,
                       class_cuts=_class_cuts(plain, nfc) if cuttable else None,
                       added=tuple(sorted({a["content"] for a in plain})))
    if why_not is not None:
        return plan
    if not fast:
        return plan.without_fast("the fast path was turned off")
    try:
        import gigatoken  # noqa: F401
    except ImportError:
        return plan.without_fast("gigatoken is not installed")
    fast_json = _fast_json(data, plain, nfc)
    try:
        loaded = _load_fast(fast_json)
    except Exception as e:  # noqa: BLE001 - the Rust loader raises RuntimeError/ValueError
        return plan.without_fast(f"gigatoken cannot load it ({_first_line(e)})")
    _PLANNED[:] = [(os.getpid(), fast_json, loaded)]  # this process's first TokenEncoder of the plan takes it
    return replace(plan, fast_json=fast_json, fast_off=None)


def _fast_json(data: dict, plain: list[dict], nfc: bool) -> str:
    """What gigatoken loads: the model and pre-tokenizer as they are, the normalizer in its
    plain spelling, only the non-special added tokens with the ids ``tokenizers`` gave them,
    and nothing that adds tokens (what Hugging Face does with ``encode_special_tokens`` and
    ``add_special_tokens=False``)."""
    fast_data = dict(data)
    if _deepseek_llm(data.get("pre_tokenizer")):  # pre-tokenized here (.pretok): gigatoken merges each pre-token
        fast_data["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                                      "use_regex": False}
    fast_data["normalizer"] = {"type": "NFC"} if nfc else None
    fast_data["added_tokens"] = plain
    fast_data["post_processor"] = None
    fast_data["truncation"] = None
    fast_data["padding"] = None
    return json.dumps(fast_data, ensure_ascii=False)


def _family(data: dict) -> tuple[str | None, str | None]:
    """(pre-tokenizer family or None, None when model, normalizer and pre-tokenizer are in the allow-list, else why not)."""
    family = _pretokenizer_family(data.get("pre_tokenizer"))
    why_not = _model_why_not(data.get("model") or {})
    if why_not is None and family is None:
        why_not = (f"pre-tokenizer {_describe_pretokenizer(data.get('pre_tokenizer'))} is not in the fast path's "
                   f"allow-list")
    norm = data.get("normalizer")
    if why_not is None and norm not in _IDENTITY_NORMALIZERS and norm not in _NFC_NORMALIZERS:
        why_not = f"normalizer {_describe(norm, 'normalizers')} is not in the fast path's allow-list"
    return family, why_not


def _model_why_not(model: dict) -> str | None:
    if model.get("type") != "BPE":
        return f"model {model.get('type')} is not BPE"
    for key in ("dropout", "byte_fallback", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            return f"BPE {key} is not in the fast path's allow-list"
    vocab = model.get("vocab") or {}
    if not _BYTE_ALPHABET <= vocab.keys():
        return "the vocabulary lacks some byte-level characters of UTF-8 bytes"
    return None


def _byte_alphabet() -> frozenset[str]:
    """The characters byte-level BPE spells bytes with (GPT-2's ``bytes_to_unicode``), for the bytes UTF-8 text
    holds (not 0xC0, 0xC1, 0xF5-0xFF, which DeepSeek-LLM's vocabulary leaves out)."""
    from .pretok import byte_chars

    return frozenset(c for b, c in enumerate(byte_chars()) if b not in (0xC0, 0xC1) and b < 0xF5)


_BYTE_ALPHABET = _byte_alphabet()


def _pretokenizer_family(pre: dict | None) -> str | None:
    if not pre:
        return None
    if _deepseek_llm(pre) and _OWN_PRETOKENIZERS:
        return "deepseek_llm"
    if pre.get("type") == "ByteLevel":
        return "gpt2" if pre.get("use_regex", True) and not pre.get("add_prefix_space", False) else None
    if pre.get("type") != "Sequence":
        return None
    *splits, byte_level = pre.get("pretokenizers") or [None]
    if not isinstance(byte_level, dict) or not _plain_byte_level(byte_level):
        return None
    patterns = []
    for split in splits:
        if split.get("type") != "Split" or split.get("behavior") != "Isolated" or split.get("invert"):
            return None
        patterns.append((split.get("pattern") or {}).get("Regex"))
    return next((name for name, regexes in SPLIT_FAMILIES.items() if tuple(patterns) == regexes), None)


def _deepseek_llm(pre: dict | None) -> bool:
    """Is ``pre`` DeepSeek-LLM's pre-tokenizer (run by :mod:`.pretok`, the merges by gigatoken)?"""
    from .pretok import DEEPSEEK_LLM

    parts = (pre or {}).get("pretokenizers") or []
    return (pre or {}).get("type") == "Sequence" and len(parts) == len(DEEPSEEK_LLM) + 1 \
        and all(a == b for a, b in zip(parts, DEEPSEEK_LLM)) and _plain_byte_level(parts[-1])


def _plain_byte_level(part: dict) -> bool:
    return part.get("type") == "ByteLevel" and not part.get("use_regex", True) and not part.get("add_prefix_space")


def _describe_pretokenizer(pre: dict | None) -> str:
    return _describe(pre, "pretokenizers")


def _describe(part: dict | None, key: str) -> str:
    if not part:
        return "none"
    if part.get("type") == "Sequence":
        return "Sequence[" + ", ".join(str(p.get("type")) for p in part.get(key) or []) + "]"
    return str(part.get("type"))


def _plain_added_tokens(data: dict, hf) -> tuple[list[dict], str | None]:
    """The non-special added tokens as ``tokenizers`` resolved them (its ids and flags), and
    None, or why they keep the tokenizer off the fast path.

    A content listed as special anywhere in the file is special for ``tokenizers`` (plain
    text here), whatever else lists it. Every special token is matched, then skipped, by
    ``tokenizers``: a non-special token that starts inside one is never found there.
    """
    specials = {str(a.get("content", "")) for a in data.get("added_tokens") or [] if a.get("special")}
    plain = []
    for tid, tok in sorted(hf.get_added_tokens_decoder().items()):
        if tok.special or tok.content in specials:
            continue
        plain.append({"id": int(tid), "content": tok.content, "single_word": bool(tok.single_word),
                      "lstrip": bool(tok.lstrip), "rstrip": bool(tok.rstrip), "normalized": bool(tok.normalized),
                      "special": False})
    identity = data.get("normalizer") in _IDENTITY_NORMALIZERS
    own_pretokenizer = _deepseek_llm(data.get("pre_tokenizer"))
    for a in plain:
        content = a["content"]
        if own_pretokenizer and len(content) != 1:
            return plain, (f"added token {content!r} is longer than one character, which DeepSeek-LLM's fast "
                           f"pre-tokenizer does not cut out")
        flag = next((f for f in ("single_word", "lstrip", "rstrip") if a[f]), None)
        if flag is not None:
            return plain, f"added token {content!r} is {flag}, which is not in the fast path's allow-list"
        if a["normalized"] and not identity:
            return plain, (f"added token {content!r} is matched after normalization (normalized=true), which is not "
                           f"in the fast path's allow-list")
        hiding = next((s for s in sorted(specials) if _overlaps(s, content)), None)
        if hiding is not None:
            return plain, (f"special token {hiding!r} overlaps added token {content!r}, which is not in the fast "
                           f"path's allow-list")
    return plain, None


def _overlaps(special: str, content: str) -> bool:
    """Can a match of ``special`` hide one of ``content`` (contain it, or end with its start)?"""
    return content in special or any(content.startswith(special[i:]) for i in range(1, len(special)))


def _added_tokens_allow_cuts(plain: list[dict]) -> bool:
    """No non-special added token can straddle a cut (special ones are plain text here; none strips whitespace)."""
    return not any(any(c.isspace() for c in a["content"]) for a in plain)


def _class_cuts(plain: list[dict], nfc: bool) -> tuple[str, ...] | None:
    """The non-special added tokens a class cut must not split; None: no class cuts."""
    if nfc and any(a["normalized"] for a in plain):
        return None
    return tuple(sorted({a["content"] for a in plain if len(a["content"]) > 1}))

# ---------------------------------------------------------------------------- cutting
def cut_points(text: str, piece_chars: int, class_cuts: tuple[str, ...] | None = None,
               added: tuple[str, ...] = ()) -> list[int]:
    """Positions where ``text`` is cut so that pieces are about ``piece_chars`` long.

    Each cut is a pre-token boundary for every supported family (module docstring). A
    piece is longer than ``piece_chars`` only where no cut point exists in it.
    ``class_cuts``: see :class:`EncoderPlan` (the third rule, for stretches the first two
    cannot cut). ``added``: the non-special added tokens (see :func:`_space_cut`).
    """
    cuts: list[int] = []
    rules = _rules(added)
    start, n = 0, len(text)
    while n - start > piece_chars:
        limit = start + piece_chars
        # the last cut in the piece's second half, else anywhere in it, else by the third rule,
        # else the first after it
        cut = (_last_cut(text, max(start, limit - piece_chars // 2), limit, rules)
               or _last_cut(text, start, limit, rules))
        if cut is None and class_cuts is not None:
            cut = _class_cut(text, start, limit, class_cuts)
        if cut is None:
            after = [_first_cut(text, limit, rules)] + ([_first_class_cut(text, limit, class_cuts)]
                                                        if class_cuts is not None else [])
            cut = min((c for c in after if c is not None), default=None)
        if cut is None:
            break
        cuts.append(cut)
        start = cut
    return cuts


def _newline_cut(text: str, i: int) -> bool:
    """Is ``i + 1`` a cut after the newline at ``i`` ("x\\n|y")?

    x and y are not whitespace (Python's ``isspace`` covers Unicode White_Space, the
    regexes' ``\\s``) and y is not "/" (o200k's ``[\\r\\n/]*`` takes it after punctuation).
    """
    return (0 < i < len(text) - 1 and text[i] == "\n" and not text[i - 1].isspace()
            and not text[i + 1].isspace() and text[i + 1] != "/")


def _space_cut(text: str, i: int, added: tuple[str, ...] = ()) -> bool:
    """Is ``i`` a cut before the space at ``i`` ("x| y")?

    y is not whitespace and x is not whitespace or is a space too ("x  | y": the run before
    y ends in two spaces), and then y does not start an added token of ``added`` (which
    ``tokenizers`` cuts out first: the whitespace before it ends a segment, where
    ``\\s+(?!\\S)`` takes the whole run).
    """
    if not (0 < i < len(text) - 1 and text[i] == " " and not text[i + 1].isspace()):
        return False
    if text[i - 1] == " ":
        return not any(text.startswith(tok, i + 1) for tok in added)
    return not text[i - 1].isspace()


def _rules(added: tuple[str, ...] = ()) -> tuple:
    return ((_NEWLINE_CANDIDATE, 2, lambda text, cut: _newline_cut(text, cut - 1)),
            (_SPACE_CANDIDATE, 1, lambda text, cut: _space_cut(text, cut, added)))


def is_cut(text: str, i: int, added: tuple[str, ...] = ()) -> bool:
    """May ``text`` be cut before position ``i`` (by either rule of the module docstring)?

    ``added``: the tokenizer's non-special added tokens.
    """
    return _newline_cut(text, i - 1) or _space_cut(text, i, added)


def _last_cut(text: str, lo: int, hi: int, rules: tuple = _rules()) -> int | None:
    """The last cut in ``(lo, hi]`` by the newline rule, else by the space rule, else None.

    Looks at growing windows that end at ``hi``, so a typical call reads a few kB.
    """
    for pattern, shift, exact in rules:
        end, span = hi, 4096
        while end > lo:
            start = max(lo, end - span)
            found = [m.start() + shift for m in pattern.finditer(text, start, end)]
            for cut in reversed(found):
                if lo < cut <= hi and exact(text, cut):
                    return cut
            end, span = start, span * 8
    return None


def _first_cut(text: str, lo: int, rules: tuple = _rules()) -> int | None:
    """The first cut after ``lo`` by either rule, or None."""
    best = None
    for pattern, shift, exact in rules:
        m = pattern.search(text, lo)
        while m is not None and (best is None or m.start() + shift < best):
            cut = m.start() + shift
            if cut > lo and exact(text, cut):
                best = cut
                break
            m = pattern.search(text, m.start() + 1)
    return best


def is_class_cut(text: str, i: int, class_cuts: tuple[str, ...] = ()) -> bool:
    """May ``text`` be cut before ``i`` by the third rule (module docstring)?"""
    if not 0 < i < len(text) or _CLASS_CANDIDATE.match(text, i - 1) is None:
        return False
    return not any(tok in text[max(0, i - len(tok) + 1):i + len(tok) - 1] for tok in class_cuts)


def _class_cut(text: str, lo: int, hi: int, class_cuts: tuple[str, ...]) -> int | None:
    """The last cut by the third rule in ``(lo + (hi - lo) // 2, hi]``, else in ``(lo, hi]``, else None."""
    for a in (lo + (hi - lo) // 2, lo):
        end, span = hi, 4096
        while end > a:
            start = max(a, end - span)
            found = [m.start() + 1 for m in _CLASS_CANDIDATE.finditer(text, start, end)]
            for cut in reversed(found):
                if a < cut <= hi and is_class_cut(text, cut, class_cuts):
                    return cut
            end, span = start, span * 8
    return None


def _first_class_cut(text: str, lo: int, class_cuts: tuple[str, ...]) -> int | None:
    """The first cut by the third rule after ``lo``, or None."""
    for m in _CLASS_CANDIDATE.finditer(text, lo):
        if m.start() + 1 > lo and is_class_cut(text, m.start() + 1, class_cuts):
            return m.start() + 1
    return None


def split_document(text: str, piece_chars: int | None, class_cuts: tuple[str, ...] | None = None,
                   added: tuple[str, ...] = ()) -> list[str]:
    """``text`` cut at :func:`cut_points` (one piece when it is short or cannot be cut)."""
    if piece_chars is None or len(text) <= piece_chars:
        return [text]
    bounds = [0, *cut_points(text, piece_chars, class_cuts, added), len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


# ---------------------------------------------------------------------------- encoding
@dataclass
class Encoded:
    """A batch's tokens: ``lengths[i]`` tokens of text i, concatenated in ``ids``.

    ``mismatch``: index of the first verified text on which the fast backend disagreed
    with Hugging Face (None: none did). ``error``: one line when the fast backend failed
    and the batch was encoded by Hugging Face instead.
    """

    lengths: np.ndarray
    ids: np.ndarray
    mismatch: int | None = None
    error: str | None = None


class TokenEncoder:
    """Encodes texts with the plan's backend in this process.

    ``encode_arrays(texts, parallel=False)`` runs on the calling thread only (one
    worker); ``parallel=True`` lets the backend use every core.
    """

    def __init__(self, plan: EncoderPlan, hf=None):
        """``hf``: the ``tokenizers.Tokenizer`` of ``plan.hf_json`` when the caller has loaded it (it is set to
        no truncation, no padding and special-token strings as plain text here)."""
        from tokenizers import Tokenizer as HFTokenizer

        self.plan = plan
        self._hf = HFTokenizer.from_str(plan.hf_json) if hf is None else hf
        self._hf.no_truncation()
        self._hf.no_padding()
        self._hf.encode_special_tokens = True  # special-token strings in documents are plain text
        self._fast = None
        self._rss_mark = 0
        self.backend = HF_BACKEND
        # DeepSeek-LLM: pre-tokenized here; its non-special added tokens (single characters) cut out first
        self._own_pretokens: dict[str, int] | None = None
        if plan.fast_json is not None and plan.family == "deepseek_llm":
            self._own_pretokens = {a["content"]: a["id"] for a in json.loads(plan.fast_json)["added_tokens"]}
        if plan.fast_json is not None:
            self._fast = _take_planned(plan.fast_json) or _load_fast(plan.fast_json)
            self.backend = FAST_BACKEND
            self._rss_mark = _rss_bytes()

    def encode_arrays(self, texts: Sequence[str], *, parallel: bool = False,
                      verify: Sequence[int] = ()) -> Encoded:
        """Tokens of ``texts``; with the fast backend, texts ``verify`` are checked against HF."""
        pieces, owner = self._pieces(texts)
        error = None
        if self._fast is not None:
            try:
                plens, ids = self._fast_encode_guarded(pieces, parallel)
            except Exception as e:  # noqa: BLE001 - any failure of the fast backend: use the reference
                error = f"{FAST_BACKEND} failed ({_first_line(e)})"
                plens, ids = self._hf_encode(pieces, parallel)
        else:
            plens, ids = self._hf_encode(pieces, parallel)
        lengths = _per_text(plens, owner, len(texts))
        mismatch = None
        if self._fast is not None and error is None and len(verify):
            mismatch = self._verify(pieces, owner, plens, ids, verify)
        fast_json = self.plan.fast_json
        if self._fast is not None and fast_json is not None and _rss_bytes() - self._rss_mark > FAST_CACHE_BUDGET:
            self._fast = None  # drop the pre-token cache before building a fresh one
            self._fast = _load_fast(fast_json)
            self._rss_mark = _rss_bytes()
        return Encoded(lengths, ids, mismatch, error)

    def encode_lists(self, texts: Sequence[str], *, parallel: bool = True) -> list[list[int]]:
        enc = self.encode_arrays(texts, parallel=parallel)
        bounds: np.ndarray = np.zeros(len(enc.lengths) + 1, dtype=np.int64)
        np.cumsum(enc.lengths, out=bounds[1:])
        flat = enc.ids.tolist()
        return [flat[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]

    # ------------------------------------------------------------------ internals
    def _pieces(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray | None]:
        limit = self.plan.piece_chars
        if limit is None or all(len(t) <= limit for t in texts):
            return list(texts), None
        pieces: list[str] = []
        owner: list[int] = []
        for i, t in enumerate(texts):
            parts = split_document(t, limit, self.plan.class_cuts, self.plan.added)
            pieces.extend(parts)
            owner.extend([i] * len(parts))
        return pieces, np.asarray(owner, dtype=np.int64)

    def _fast_encode_guarded(self, pieces: list[str], parallel: bool) -> tuple[np.ndarray, np.ndarray]:
        """The fast backend, except for pieces with code points it may read differently, and, under NFC with
        non-special added tokens, pieces that NFC changes (gigatoken looks for those tokens in the normalized
        text too, where ``tokenizers`` looks for a ``normalized: false`` one only in the text as written:
        ``"cafe\u0301"`` holds an added ``"café"`` only after NFC)."""
        guard = normalizations_may_disagree if self.plan.nfc else has_unassigned_code_points
        if self.plan.nfc and self.plan.added:
            odd = [k for k, p in enumerate(pieces) if guard(p) or not unicodedata.is_normalized("NFC", p)]
        else:
            odd = [k for k, p in enumerate(pieces) if guard(p)]
        if not odd:
            return self._fast_encode(pieces, parallel)
        odd_set = set(odd)
        rest = [k for k in range(len(pieces)) if k not in odd_set]
        lens: np.ndarray = np.zeros(len(pieces), dtype=np.int64)
        parts: list[np.ndarray] = [np.zeros(0, dtype=np.uint32)] * len(pieces)
        for ks, (plens, ids) in ((rest, self._fast_encode([pieces[k] for k in rest], parallel)),
                                 (odd, self._hf_encode([pieces[k] for k in odd], parallel))):
            lens[ks] = plens
            for k, part in zip(ks, np.split(ids, np.cumsum(plens)[:-1])):
                parts[k] = part
        return lens, np.concatenate(parts)

    def _fast_encode(self, pieces: list[str], parallel: bool) -> tuple[np.ndarray, np.ndarray]:
        if not pieces:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint32)
        if self._own_pretokens is not None:
            from .pretok import encode_pretokens

            # groups of about a million characters: the passes over the code points hold ~40 bytes each
            done = [encode_pretokens(self._fast, self._hf.model, pieces[lo:hi], self._own_pretokens, parallel)
                    for lo, hi in _groups(pieces, 1 << 20)]
            return np.concatenate([d[0] for d in done]), np.concatenate([d[1] for d in done])
        assert self._fast is not None  # encode() calls this only while the fast path is loaded
        arr = self._fast.encode_batch(pieces, parallel=parallel)
        layout = arr.layout
        offsets = np.asarray(layout.offsets, dtype=np.int64)
        ids = np.asarray(layout.content.data, dtype=np.uint32)[offsets[0]:offsets[-1]]
        return np.diff(offsets), ids

    def _hf_one(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def _hf_encode(self, pieces: list[str], parallel: bool) -> tuple[np.ndarray, np.ndarray]:
        lens: np.ndarray = np.zeros(len(pieces), dtype=np.int64)
        parts: list[np.ndarray] = []
        # encode_batch_fast skips the offsets (about a fifth of tokenizers' time); a worker process
        # (TOKENIZERS_PARALLELISM=false, set by worker_init) runs it on its own thread
        if parallel or os.environ.get("TOKENIZERS_PARALLELISM") == "false":
            enc = getattr(self._hf, "encode_batch_fast", None) or self._hf.encode_batch
            # groups of about one piece of text: Hugging Face keeps ~100 bytes per character
            for lo, hi in _groups(pieces, self.plan.piece_chars or PIECE_CHARS):
                for j, e in enumerate(enc(pieces[lo:hi], add_special_tokens=False)):
                    lens[lo + j] = len(e.ids)
                    parts.append(np.asarray(e.ids, dtype=np.uint32))
        else:
            for j, piece in enumerate(pieces):
                piece_ids = self._hf_one(piece)
                lens[j] = len(piece_ids)
                parts.append(np.asarray(piece_ids, dtype=np.uint32))
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)
        return lens, ids

    def _verify(self, pieces, owner, plens, ids, verify) -> int | None:
        """Index of the first text in ``verify`` whose first piece the backends disagree on.

        A first piece longer than ``piece_chars`` (one that could not be cut) is not checked:
        Hugging Face would take ~200 bytes per character for it.
        """
        starts: np.ndarray = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(plens, out=starts[1:])
        first_piece = (np.arange(len(pieces)) if owner is None
                       else np.asarray(np.searchsorted(owner, np.arange(int(owner[-1]) + 1 if len(owner) else 0))))
        for i in verify:
            k = int(first_piece[i])
            if len(pieces[k]) > (self.plan.piece_chars or PIECE_CHARS):
                continue
            fast = ids[starts[k]:starts[k + 1]]
            ref = self._hf_one(pieces[k])
            if len(ref) != len(fast) or not np.array_equal(np.asarray(ref, dtype=np.uint32), fast):
                return int(i)
        return None


def _groups(pieces: list[str], chars: int):
    lo, size = 0, 0
    for i, p in enumerate(pieces):
        size += len(p)
        if size >= chars:
            yield lo, i + 1
            lo, size = i + 1, 0
    if lo < len(pieces):
        yield lo, len(pieces)


def _per_text(piece_lens: np.ndarray, owner: np.ndarray | None, n: int) -> np.ndarray:
    if owner is None:
        return piece_lens.astype(np.int64, copy=False)
    return np.bincount(owner, weights=piece_lens, minlength=n).astype(np.int64)


def _load_fast(fast_json: str):
    import gigatoken

    return gigatoken.Tokenizer.from_json(fast_json)


#: the gigatoken tokenizer plan_encoder loaded to check it loads: (pid, its fast_json, the tokenizer), at most one
_PLANNED: list[tuple[int, str, object]] = []


def _take_planned(fast_json: str):
    """The tokenizer plan_encoder loaded from this very ``fast_json`` in this process (once), else None: the
    encoder a plan's process builds first does not load the same file a second time (0.4 s for Qwen2's)."""
    if _PLANNED and _PLANNED[0][0] == os.getpid() and _PLANNED[0][1] is fast_json:
        return _PLANNED.pop()[2]
    return None


def _rss_bytes() -> int:
    """This process's resident memory (Linux); 0 where /proc is absent (no rebuilds)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


# ---------------------------------------------------------------------------- worker processes
_WORKER_ENCODER: TokenEncoder | None = None


def worker_init(plan: EncoderPlan) -> None:
    """Initializer of a tokenize worker process: one single-threaded encoder per process."""
    global _WORKER_ENCODER
    import gc

    # a forked worker: keep the garbage collector off the parent's objects, which it would
    # otherwise walk (and so copy, page by page) although this process never uses them
    gc.freeze()
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker, as --workers promises
    _WORKER_ENCODER = TokenEncoder(plan)


def worker_encode(texts: list[str], verify: list[int]) -> Encoded:
    """Encode one batch in a worker process (after :func:`worker_init`)."""
    assert _WORKER_ENCODER is not None, "worker_init was not run in this process"
    return _WORKER_ENCODER.encode_arrays(texts, parallel=False, verify=verify)
