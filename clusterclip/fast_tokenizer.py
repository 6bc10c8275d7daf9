"""Exact encoders for the token store: the Hugging Face reference and a faster twin.

An :class:`EncoderPlan` is made once from a tokenizer's ``tokenizer.json`` text
(:func:`plan_encoder`); it is plain data, so worker processes build the same
:class:`Encoder` from it. The plan says

* whether the fast backend (``gigatoken``, byte-level BPE with Hugging Face merge
  semantics) may run this tokenizer. It may when the model is a plain byte-level BPE,
  the normalizer is none or NFC and the pre-tokenizer is one of the regex families in
  :data:`PRETOKENIZER_FAMILIES` (GPT-2, cl100k / Llama-3, Qwen2, o200k). Anything
  else (WordPiece, Unigram, Metaspace, NFKC, an unknown regex, byte fallback...) runs on
  Hugging Face ``tokenizers``, and :attr:`EncoderPlan.fast_off` says why. The fast
  backend gets the same JSON without the special added tokens and the post-processor,
  which is what Hugging Face does with ``encode_special_tokens = True`` and
  ``add_special_tokens=False``: special-token strings inside a document are plain text
  and nothing is added. The two backends are meant to agree token for token; the token
  store checks that on a sample of every run's documents (``verify`` of
  :meth:`Encoder.encode_arrays`) and falls back on any difference.
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

  An exhaustive test checks both rules for every family over each character class on
  either side and the text around them (tests/test_tokenization_fast.py).
  NFC cannot change these characters or compose across a newline or space. Added
  (non-special) tokens that contain whitespace or strip it would cross cuts, so a
  tokenizer with such tokens is never cut. Tokenizers that cannot be cut are encoded
  whole (their memory then grows with the document).

Memory: a piece is at most :data:`PIECE_CHARS` characters unless the text offers no cut
point (a run of that many characters with neither rule), so encoding holds one piece's
working memory, which is what makes a single huge document cost bounded memory.
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

#: pre-tokenizer regexes (as written in ``tokenizer.json``) that the fast path runs and
#: the document cutter is proven for
PRETOKENIZER_FAMILIES = {"gpt2": _GPT2, "cl100k": _CL100K, "qwen2": _QWEN2, "o200k": _O200K}

# Candidates for the two cut rules, found by the C regex engine; each is then checked
# exactly (``_newline_cut``, ``_space_cut``).
_NEWLINE_CANDIDATE = re.compile(r"\S\n(?=[^\s/])")  # cut at m.start() + 2
_SPACE_CANDIDATE = re.compile(r"[\S ](?= \S)")  # cut at m.start() + 1


# Code points whose Unicode properties the fast backend reads from a newer Unicode than
# Hugging Face's regex engine (gigatoken 0.10: Unicode 17); a scan of every code point in
# several contexts found differences only for code points that Python's own database
# (Unicode 14-16) lists as unassigned, all of them in these ranges (assigned in Unicode 17).
# A piece holding a code point from U+0800 up that is unassigned for Python, or in these
# ranges, is encoded by Hugging Face.
_NEWER_UNICODE = (
    (0x088F, 0x088F), (0x0C5C, 0x0C5C), (0x0CDC, 0x0CDC), (0x1ACF, 0x1AEB), (0xA7CE, 0xA7F1),
    (0x10940, 0x10959), (0x10EC5, 0x10EC7), (0x10EFA, 0x10EFB), (0x11B60, 0x11B67), (0x11DB0, 0x11DE9),
    (0x16EA0, 0x16ED3), (0x16FF2, 0x16FF6), (0x187F8, 0x187FF), (0x18D09, 0x18D1E), (0x18D80, 0x18DF2),
    (0x1E6C0, 0x1E6FF), (0x2B73A, 0x2B73F), (0x2CEA2, 0x2CEAD), (0x323B0, 0x33479),
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
    than this are cut into pieces (see the module docstring), None: never cut.
    """

    hf_json: str
    fast_json: str | None
    fast_off: str | None
    family: str | None
    piece_chars: int | None

    @property
    def backend(self) -> str:
        return FAST_BACKEND if self.fast_json is not None else HF_BACKEND

    def without_fast(self, reason: str) -> EncoderPlan:
        return replace(self, fast_json=None, fast_off=reason)


def plan_encoder(hf_json: str, *, fast: bool = True, piece_chars: int | None = None) -> EncoderPlan:
    """The plan for the tokenizer whose ``tokenizer.json`` text is ``hf_json``.

    ``piece_chars``: cut documents longer than this (default :data:`PIECE_CHARS`).
    """
    piece_chars = PIECE_CHARS if piece_chars is None else piece_chars
    data = json.loads(hf_json)
    family, why_not = _family(data)
    cuttable = family is not None and _added_tokens_allow_cuts(data)
    plan = EncoderPlan(hf_json=hf_json, fast_json=None, fast_off=why_not, family=family,
                       piece_chars=piece_chars if cuttable else None)
    if why_not is not None:
        return plan
    if not fast:
        return plan.without_fast("the fast path was turned off")
    try:
        import gigatoken  # noqa: F401
    except ImportError:
        return plan.without_fast("gigatoken is not installed")
    fast_data = dict(data)
    fast_data["added_tokens"] = [a for a in data.get("added_tokens") or [] if not a.get("special")]
    fast_data["post_processor"] = None
    fast_data["truncation"] = None
    fast_data["padding"] = None
    fast_json = json.dumps(fast_data, ensure_ascii=False)
    try:
        _load_fast(fast_json)
    except Exception as e:  # noqa: BLE001 - the Rust loader raises RuntimeError/ValueError
        return plan.without_fast(f"gigatoken cannot load it ({_first_line(e)})")
    return replace(plan, fast_json=fast_json, fast_off=None)


def _family(data: dict) -> tuple[str | None, str | None]:
    """(pre-tokenizer family, None) when the fast path applies, else (family or None, reason)."""
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        return None, f"model {model.get('type')} is not BPE"
    for key in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            return None, f"BPE {key} is not supported"
    family = _pretokenizer_family(data.get("pre_tokenizer"))
    if family is None:
        return None, f"pre-tokenizer {_describe_pretokenizer(data.get('pre_tokenizer'))} is not a known byte-level family"
    norm = data.get("normalizer")
    if norm is not None and norm.get("type") != "NFC":
        return None, f"normalizer {norm.get('type')} is not supported"
    if model.get("byte_fallback"):
        return family, "BPE byte_fallback is not supported"
    return family, None


def _pretokenizer_family(pre: dict | None) -> str | None:
    if not pre:
        return None
    if pre.get("type") == "ByteLevel":
        if pre.get("use_regex", True) and not pre.get("add_prefix_space", False):
            return "gpt2"
        return None
    if pre.get("type") != "Sequence":
        return None
    parts = pre.get("pretokenizers") or []
    if len(parts) != 2:
        return None
    split, byte_level = parts
    if split.get("type") != "Split" or split.get("behavior") != "Isolated" or split.get("invert"):
        return None
    if byte_level.get("type") != "ByteLevel" or byte_level.get("use_regex", True) \
            or byte_level.get("add_prefix_space", False):
        return None
    pattern = (split.get("pattern") or {}).get("Regex")
    for name, regex in PRETOKENIZER_FAMILIES.items():
        if pattern == regex:
            return name
    return None


def _describe_pretokenizer(pre: dict | None) -> str:
    if not pre:
        return "none"
    if pre.get("type") == "Sequence":
        return "Sequence[" + ", ".join(str(p.get("type")) for p in pre.get("pretokenizers") or []) + "]"
    return str(pre.get("type"))


def _added_tokens_allow_cuts(data: dict) -> bool:
    """No non-special added token can straddle a cut (special ones are plain text here)."""
    for a in data.get("added_tokens") or []:
        if a.get("special"):
            continue
        content = str(a.get("content", ""))
        if a.get("lstrip") or a.get("rstrip") or any(c.isspace() for c in content):
            return False
    return True


# ---------------------------------------------------------------------------- cutting
def cut_points(text: str, piece_chars: int) -> list[int]:
    """Positions where ``text`` is cut so that pieces are about ``piece_chars`` long.

    Each cut is a pre-token boundary for every supported family (module docstring). A
    piece is longer than ``piece_chars`` only where no cut point exists in it.
    """
    cuts: list[int] = []
    start, n = 0, len(text)
    while n - start > piece_chars:
        limit = start + piece_chars
        # the last cut in the piece's second half, else anywhere in it, else the first after it
        cut = (_last_cut(text, max(start, limit - piece_chars // 2), limit) or _last_cut(text, start, limit)
               or _first_cut(text, limit))
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


def _space_cut(text: str, i: int) -> bool:
    """Is ``i`` a cut before the space at ``i`` ("x| y")?

    y is not whitespace and x is not whitespace or is a space too ("x  | y": the run before
    y ends in two spaces).
    """
    return (0 < i < len(text) - 1 and text[i] == " " and (text[i - 1] == " " or not text[i - 1].isspace())
            and not text[i + 1].isspace())


_RULES = ((_NEWLINE_CANDIDATE, 2, lambda text, cut: _newline_cut(text, cut - 1)),
          (_SPACE_CANDIDATE, 1, _space_cut))


def is_cut(text: str, i: int) -> bool:
    """May ``text`` be cut before position ``i`` (by either rule of the module docstring)?"""
    return _newline_cut(text, i - 1) or _space_cut(text, i)


def _last_cut(text: str, lo: int, hi: int) -> int | None:
    """The last cut in ``(lo, hi]`` by the newline rule, else by the space rule, else None.

    Looks at growing windows that end at ``hi``, so a typical call reads a few kB.
    """
    for pattern, shift, exact in _RULES:
        end, span = hi, 4096
        while end > lo:
            start = max(lo, end - span)
            found = [m.start() + shift for m in pattern.finditer(text, start, end)]
            for cut in reversed(found):
                if lo < cut <= hi and exact(text, cut):
                    return cut
            end, span = start, span * 8
    return None


def _first_cut(text: str, lo: int) -> int | None:
    """The first cut after ``lo`` by either rule, or None."""
    best = None
    for pattern, shift, exact in _RULES:
        m = pattern.search(text, lo)
        while m is not None and (best is None or m.start() + shift < best):
            cut = m.start() + shift
            if cut > lo and exact(text, cut):
                best = cut
                break
            m = pattern.search(text, m.start() + 1)
    return best


def split_document(text: str, piece_chars: int | None) -> list[str]:
    """``text`` cut at :func:`cut_points` (one piece when it is short or cannot be cut)."""
    if piece_chars is None or len(text) <= piece_chars:
        return [text]
    bounds = [0, *cut_points(text, piece_chars), len(text)]
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


class Encoder:
    """Encodes texts with the plan's backend in this process.

    ``encode_arrays(texts, parallel=False)`` runs on the calling thread only (one
    worker); ``parallel=True`` lets the backend use every core.
    """

    def __init__(self, plan: EncoderPlan):
        from tokenizers import Tokenizer as HFTokenizer

        self.plan = plan
        self._hf = HFTokenizer.from_str(plan.hf_json)
        self._hf.no_truncation()
        self._hf.no_padding()
        self._hf.encode_special_tokens = True  # special-token strings in documents are plain text
        self._fast = None
        self._rss_mark = 0
        self.backend = HF_BACKEND
        if plan.fast_json is not None:
            self._fast = _load_fast(plan.fast_json)
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
        if self._fast is not None and _rss_bytes() - self._rss_mark > FAST_CACHE_BUDGET:
            self._fast = None  # drop the pre-token cache before building a fresh one
            self._fast = _load_fast(self.plan.fast_json)
            self._rss_mark = _rss_bytes()
        return Encoded(lengths, ids, mismatch, error)

    def encode_lists(self, texts: Sequence[str], *, parallel: bool = True) -> list[list[int]]:
        enc = self.encode_arrays(texts, parallel=parallel)
        bounds = np.zeros(len(enc.lengths) + 1, dtype=np.int64)
        np.cumsum(enc.lengths, out=bounds[1:])
        flat = enc.ids.tolist()
        return [flat[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]

    def hf_tokens(self, text: str) -> list[int]:
        """The reference tokens of ``text`` (cut into pieces like every encode)."""
        out: list[int] = []
        for piece in split_document(text, self.plan.piece_chars):
            out.extend(self._hf_one(piece))
        return out

    # ------------------------------------------------------------------ internals
    def _pieces(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray | None]:
        limit = self.plan.piece_chars
        if limit is None or all(len(t) <= limit for t in texts):
            return list(texts), None
        pieces: list[str] = []
        owner: list[int] = []
        for i, t in enumerate(texts):
            parts = split_document(t, limit)
            pieces.extend(parts)
            owner.extend([i] * len(parts))
        return pieces, np.asarray(owner, dtype=np.int64)

    def _fast_encode_guarded(self, pieces: list[str], parallel: bool) -> tuple[np.ndarray, np.ndarray]:
        """The fast backend, except for pieces with code points it may read differently."""
        odd = [k for k, p in enumerate(pieces) if has_unassigned_code_points(p)]
        if not odd:
            return self._fast_encode(pieces, parallel)
        odd_set = set(odd)
        rest = [k for k in range(len(pieces)) if k not in odd_set]
        lens = np.zeros(len(pieces), dtype=np.int64)
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
        arr = self._fast.encode_batch(pieces, parallel=parallel)
        layout = arr.layout
        offsets = np.asarray(layout.offsets, dtype=np.int64)
        ids = np.asarray(layout.content.data, dtype=np.uint32)[offsets[0]:offsets[-1]]
        return np.diff(offsets), ids

    def _hf_one(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def _hf_encode(self, pieces: list[str], parallel: bool) -> tuple[np.ndarray, np.ndarray]:
        lens = np.zeros(len(pieces), dtype=np.int64)
        parts: list[np.ndarray] = []
        if parallel:
            enc = getattr(self._hf, "encode_batch_fast", None) or self._hf.encode_batch
            # groups of about one piece of text: Hugging Face keeps ~100 bytes per character
            for lo, hi in _groups(pieces, self.plan.piece_chars or PIECE_CHARS):
                for j, e in enumerate(enc(pieces[lo:hi], add_special_tokens=False)):
                    lens[lo + j] = len(e.ids)
                    parts.append(np.asarray(e.ids, dtype=np.uint32))
        else:
            for j, piece in enumerate(pieces):
                ids = self._hf_one(piece)
                lens[j] = len(ids)
                parts.append(np.asarray(ids, dtype=np.uint32))
        ids = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)
        return lens, ids

    def _verify(self, pieces, owner, plens, ids, verify) -> int | None:
        """Index of the first text in ``verify`` whose first piece the backends disagree on."""
        starts = np.zeros(len(pieces) + 1, dtype=np.int64)
        np.cumsum(plens, out=starts[1:])
        first_piece = (np.arange(len(pieces)) if owner is None
                       else np.searchsorted(owner, np.arange(int(owner[-1]) + 1 if len(owner) else 0)))
        for i in verify:
            k = int(first_piece[i])
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
_WORKER_ENCODER: Encoder | None = None


def worker_init(plan: EncoderPlan) -> None:
    """Initializer of a tokenize worker process: one single-threaded encoder per process."""
    global _WORKER_ENCODER
    import gc

    # a forked worker: keep the garbage collector off the parent's objects, which it would
    # otherwise walk (and so copy, page by page) although this process never uses them
    gc.freeze()
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker, as --workers promises
    _WORKER_ENCODER = Encoder(plan)


def worker_encode(texts: list[str], verify: list[int]) -> Encoded:
    """Encode one batch in a worker process (after :func:`worker_init`)."""
    assert _WORKER_ENCODER is not None, "worker_init was not run in this process"
    return _WORKER_ENCODER.encode_arrays(texts, parallel=False, verify=verify)
