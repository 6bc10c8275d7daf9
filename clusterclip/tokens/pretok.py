"""Pre-tokenizers the fast backend does not know, run here with numpy, for the fast path.

gigatoken runs the byte-level BPE merges of any vocabulary, but it pre-tokenizes only the
regex families it knows. DeepSeek-LLM's ``tokenizer.json`` (``deepseek-llm-7b-base``, also
DeepSeek-V2 and the DeepSeek-VL / Janus models) pre-tokenizes with a ``Sequence`` of five
``Split`` regexes, ``Digits`` and ``ByteLevel``. Every one of those regexes is a character
class run (``[\\r\\n]``, ``\\s?[C]+``, ``\\s+$``, ``[C]+``), so the pre-token boundaries are a
few vectorised passes over the code points of the text; the pre-tokens then go to gigatoken
as separate texts, with a ``ByteLevel`` pre-tokenizer that does not split, which applies the
merges to each as one word (:func:`encode_pretokens`).

The ``Sequence`` semantics are those of Hugging Face ``tokenizers``: each ``Split`` (behavior
``Isolated``) looks for its regex's matches inside each piece that the previous steps made
(matches and the text between them become pieces), leftmost first; ``Digits(individual)``
isolates every character Rust's ``char::is_numeric`` accepts (general categories Nd, Nl, No);
added tokens are cut out of the text before any of it. For ``\\s?[C]+`` the matches in a
piece are the maximal runs of C, each with the one whitespace character before it when that
character is in the same piece (it cannot belong to an earlier match, which ends in C, unless
it is in C, and then the run would have started there); ``\\s+$`` is the whitespace that ends
a piece (pieces hold no newline but the isolated ones, so Oniguruma's ``$`` is the piece's
end). ``\\s`` is Oniguruma's Unicode ``White_Space`` (not Python's, which adds U+001C-U+001F).

tests/test_tokenization_allowlist.py checks every code point's classes against
``tokenizers``' own pre-tokenizer (slow suite) and property-tests whole encodings of the
published file against ``tokenizers`` on drawn texts.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import numpy as np

_LETTERS = (
    "A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373\u0376\u0377"
    "\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556"
    "\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a"
    "\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4"
    "\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f"
    "\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b"
    "\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a"
    "\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
    "\U000118a0-\U000118df\U0001e900-\U0001e943"
)
_PUNCT = "!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002"
_CJK = "\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff"

#: DeepSeek-LLM's pre-tokenizer steps, as written in its ``tokenizer.json`` (then ByteLevel, no regex)
DEEPSEEK_LLM = (
    {"type": "Split", "pattern": {"Regex": "[\r\n]"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": f"\\s?[{_LETTERS}]+"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": f"\\s?[{_PUNCT}]+"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": "\\s+$"}, "behavior": "Isolated", "invert": False},
    {"type": "Split", "pattern": {"Regex": f"[{_CJK}]+"}, "behavior": "Isolated", "invert": False},
    {"type": "Digits", "individual_digits": True},
)
#: Oniguruma's ``\s`` with Unicode: the White_Space property
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

NEWLINE, SPACE, LETTER, PUNCT, CJK, NUMERIC = (1 << k for k in range(6))


def _ranges(cls: str) -> list[tuple[int, int]]:
    """The code point ranges of a regex character class body made of characters and ``a-b`` ranges."""
    out, i = [], 0
    while i < len(cls):
        if i + 2 < len(cls) and cls[i + 1] == "-":
            out.append((ord(cls[i]), ord(cls[i + 2])))
            i += 3
        else:
            out.append((ord(cls[i]), ord(cls[i])))
            i += 1
    return out


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, tuple[tuple[int, tuple[tuple[int, int], ...]], ...]]:
    """(class bits of every BMP code point, (bit, astral ranges) per class)."""
    bmp: np.ndarray = np.zeros(0x10000, dtype=np.uint8)
    astral = []
    for bit, cls in ((NEWLINE, "\r\n"), (SPACE, WHITE_SPACE), (LETTER, _LETTERS), (PUNCT, _PUNCT), (CJK, _CJK)):
        ranges = _ranges(cls)
        for a, b in ranges:
            if a <= 0xFFFF:
                bmp[a:min(b, 0xFFFF) + 1] |= bit
        astral.append((bit, tuple((max(a, 0x10000), b) for a, b in ranges if b > 0xFFFF)))
    numeric = np.fromiter((unicodedata.category(chr(c)) in ("Nd", "Nl", "No") for c in range(0x10000)), dtype=bool,
                          count=0x10000)
    bmp[numeric] |= NUMERIC
    return bmp, tuple(astral)


def classes(cp: np.ndarray) -> np.ndarray:
    """Class bits (NEWLINE, SPACE, LETTER, PUNCT, CJK, NUMERIC) of each code point of ``cp``."""
    bmp, astral = _tables()
    out = bmp[np.minimum(cp, 0xFFFF)]
    big = np.flatnonzero(cp > 0xFFFF)
    if big.size:
        out[big] = 0
        for bit, ranges in astral:
            for a, b in ranges:
                out[big[(cp[big] >= a) & (cp[big] <= b)]] |= bit
        for i in big.tolist():
            if unicodedata.category(chr(int(cp[i]))) in ("Nd", "Nl", "No"):
                out[i] |= NUMERIC
    return out


def _isolate(cut: np.ndarray, member: np.ndarray) -> None:
    """Mark each character of ``member`` as a piece of its own."""
    at = np.flatnonzero(member)
    cut[at] = True
    cut[at + 1] = True


def _runs(cut: np.ndarray, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the maximal runs of ``member`` inside the pieces ``cut`` makes."""
    same_as_prev = ~cut[:-1]  # [i]: i-1 is in the piece of i (False at 0: cut[0] is set)
    before = np.zeros_like(member)
    before[1:] = member[:-1]
    starts = np.flatnonzero(member & ~(before & same_as_prev))
    after = np.zeros_like(member)
    after[:-1] = member[1:] & same_as_prev[1:]
    ends: np.ndarray = np.flatnonzero(member & ~after) + 1
    return starts, ends


def _isolate_runs(cut: np.ndarray, member: np.ndarray, space: np.ndarray | None = None) -> None:
    """``[C]+`` (``space`` None) or ``\\s?[C]+``: each match a piece."""
    starts, ends = _runs(cut, member)
    if space is not None and starts.size:
        prev = np.maximum(starts - 1, 0)
        starts = starts - ((starts > 0) & ~cut[starts] & space[prev])
    cut[starts] = True
    cut[ends] = True


def _isolate_trailing_space(cut: np.ndarray, space: np.ndarray) -> None:
    """``\\s+$``: the whitespace that ends each piece, a piece."""
    starts, ends = _runs(cut, space)
    cut[starts[cut[ends]]] = True  # the runs that end where their piece ends


def pretokenize(cp: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Cut the code points ``cp`` (``cut[i]``: a piece starts at i; ``cut[0]`` and ``cut[n]`` set, plus the
    added tokens' and documents' bounds) into DeepSeek-LLM's pre-tokens; return the bounds (ascending)."""
    bits = classes(cp)
    space = (bits & SPACE) != 0
    _isolate(cut, (bits & NEWLINE) != 0)
    _isolate_runs(cut, (bits & LETTER) != 0, space)
    _isolate_runs(cut, (bits & PUNCT) != 0, space)
    _isolate_trailing_space(cut, space)
    _isolate_runs(cut, (bits & CJK) != 0)
    _isolate(cut, (bits & NUMERIC) != 0)
    return np.flatnonzero(cut)


_GPT2_SPACE, _GPT2_LETTER, _GPT2_NUMBER, _GPT2_OTHER = 1, 2, 3, 4


@lru_cache(maxsize=1)
def _gpt2_table() -> np.ndarray:
    """The class GPT-2's regex gives each BMP code point: whitespace, letter, number, other."""
    cats = [unicodedata.category(chr(c)) for c in range(0x10000)]
    out = np.fromiter((_GPT2_LETTER if k[0] == "L" else _GPT2_NUMBER if k[0] == "N" else _GPT2_OTHER for k in cats),
                      dtype=np.uint8, count=0x10000)
    for a, b in _ranges(WHITE_SPACE):
        out[a:b + 1] = _GPT2_SPACE
    return out


def _gpt2_classes(cp: np.ndarray) -> np.ndarray:
    out = _gpt2_table()[np.minimum(cp, 0xFFFF)]
    for i in np.flatnonzero(cp > 0xFFFF).tolist():
        k = unicodedata.category(chr(int(cp[i])))[0]
        out[i] = _GPT2_LETTER if k == "L" else _GPT2_NUMBER if k == "N" else _GPT2_OTHER
    return out


def whole_for_gigatoken(cp: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Which pieces (between consecutive ``bounds``) gigatoken's byte-level pre-tokenizer (GPT-2's regex: it
    splits even with ``use_regex`` false) leaves whole: one character; only whitespace; or characters of one
    class (letters, numbers, or neither) after a first one of that class or a space. The others are merged
    by ``tokenizers``' model (:func:`encode_pretokens`)."""
    k = _gpt2_classes(cp)
    starts, ends = bounds[:-1], bounds[1:]
    length = ends - starts
    change: np.ndarray = np.zeros(len(cp) + 1, dtype=np.int64)
    change[2:] = np.cumsum(k[1:] != k[:-1])  # change[i]: class changes among characters 0..i-1
    second = np.minimum(starts + 1, len(cp) - 1)
    one_class_after_first = change[ends] - change[np.minimum(starts + 2, ends)] == 0
    lead_ok = (k[starts] == k[second]) | (cp[starts] == 0x20)
    not_space = np.cumsum(np.append(0, k != _GPT2_SPACE))
    all_space = not_space[ends] - not_space[starts] == 0
    return (length <= 1) | all_space | (one_class_after_first & lead_ok & (k[second] != _GPT2_SPACE))


def byte_chars() -> list[str]:
    """The character byte-level BPE spells each byte with, by byte (GPT-2's ``bytes_to_unicode``)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = list(bs)
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + len(cs) - 188)
    spelled = dict(zip(bs, cs))
    return [chr(spelled[b]) for b in range(256)]


_BYTE_CHARS = byte_chars()


def encode_pretokens(fast, model, texts: list[str], added: dict[str, int],
                     parallel: bool) -> tuple[np.ndarray, np.ndarray]:
    """(tokens per text, the tokens) of ``texts`` with DeepSeek-LLM's pre-tokenizer: the merges of each pre-token
    by ``fast`` (gigatoken, loaded with a plain byte-level pre-tokenizer) where it leaves the pre-token whole,
    else by ``model`` (``tokenizers``' BPE model of the same file). ``added``: the non-special added tokens,
    single characters (content -> id), cut out first."""
    import awkward as ak

    whole = "".join(texts)
    n = len(whole)
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    if n == 0:
        return np.zeros(len(texts), dtype=np.int64), np.zeros(0, dtype=np.uint32)
    cp = np.frombuffer(whole.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    cut: np.ndarray = np.zeros(n + 1, dtype=bool)
    doc_starts: np.ndarray = np.zeros(len(texts), dtype=np.int64)
    np.cumsum(lengths[:-1], out=doc_starts[1:])
    cut[doc_starts] = True
    cut[n] = True
    if added:
        _isolate(cut, np.isin(cp, np.fromiter((ord(c) for c in added), dtype=np.uint32)))
    bounds = pretokenize(cp, cut)
    easy = whole_for_gigatoken(cp, bounds)
    width = 1 + (cp >= 0x80).astype(np.int64) + (cp >= 0x800) + (cp >= 0x10000)  # UTF-8 bytes per character
    byte_at: np.ndarray = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(width, out=byte_at[1:])
    data = np.frombuffer(whole.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    easy_at = np.flatnonzero(easy)
    layout = ak.contents.ListOffsetArray(ak.index.Index64(byte_at[bounds]),
                                         ak.contents.NumpyArray(data, parameters={"__array__": "char"}),
                                         parameters={"__array__": "string"})
    hard_at = np.flatnonzero(~easy)
    pieces_in = ak.Array(layout)
    if len(hard_at):
        pieces_in = pieces_in[easy]
    out = fast.encode_batch(pieces_in, parallel=parallel).layout
    got_off = np.asarray(out.offsets, dtype=np.int64)
    got_ids = np.asarray(out.content.data, dtype=np.uint32)[got_off[0]:got_off[-1]]
    got_off = got_off - got_off[0]
    per_piece: np.ndarray = np.zeros(len(bounds) - 1, dtype=np.int64)
    per_piece[easy_at] = np.diff(got_off)
    hard_ids = []
    for j in hard_at.tolist():
        piece = whole[bounds[j]:bounds[j + 1]]
        byte_chars = "".join(_BYTE_CHARS[b] for b in piece.encode("utf-8", "surrogatepass"))
        piece_ids = [t.id for t in model.tokenize(byte_chars)]
        per_piece[j] = len(piece_ids)
        hard_ids.append(np.asarray(piece_ids, dtype=np.uint32))
    at: np.ndarray = np.zeros(len(per_piece) + 1, dtype=np.int64)
    np.cumsum(per_piece, out=at[1:])
    ids: np.ndarray = np.empty(int(at[-1]), dtype=np.uint32)
    counts = per_piece[easy_at]
    ids[np.repeat(at[easy_at] - got_off[:-1], counts) + np.arange(len(got_ids))] = got_ids
    for j, part in zip(hard_at.tolist(), hard_ids):
        ids[at[j]:at[j + 1]] = part
    first_piece = np.searchsorted(bounds, doc_starts)  # documents start at a bound; empty ones own no piece
    per_text = np.add.reduceat(np.append(per_piece, 0), first_piece)
    per_text[lengths == 0] = 0
    return per_text.astype(np.int64), ids
