"""Hypothesis strategies that draw a whole ``tokenizer.json`` configuration, and texts for it.

A configuration is a small byte-level BPE (trained once per test module on standard-library
docstrings, with and without ``ignore_merges``) with a drawn normalizer, pre-tokenizer, model
flags and added tokens, as a user's ``tokenizer.json`` may hold them:

- normalizers: none, NFC, an empty ``Sequence`` (DeepSeek's), ``Sequence[NFC]``, and ones
  the fast path does not run (NFKC, NFD, Lowercase, Strip, ``Sequence[NFC, Lowercase]``);
- pre-tokenizers: ``ByteLevel`` with every ``add_prefix_space`` / ``trim_offsets`` /
  ``use_regex``; ``Sequence[Split, ByteLevel]`` with each family regex (GPT-2, cl100k,
  Qwen2, o200k) or another regex, every Split ``behavior`` and ``invert``, and every
  ``ByteLevel`` flag; DeepSeek-V3's three Splits; ``Digits``; none;
- model flags: ``ignore_merges``, ``byte_fallback``, ``continuing_subword_prefix``,
  ``end_of_word_suffix``;
- added tokens: 0-6 of them, contents from a pool that overlaps itself, the vocabulary and
  the texts (words, sub-words, a combining mark and the letters it composes with, Hangul
  jamo, whitespace, tokens that contain whitespace, special-looking strings and pieces of
  them), each with every combination of ``single_word``, ``lstrip``, ``rstrip``,
  ``normalized`` and ``special``, and an id as written in the file: the next free one, one far
  beyond the vocabulary (65535), one of the vocabulary, a duplicate of another added token's
  id; a content may be listed twice (special and not).

The texts are built from the same pool, so added tokens occur at word starts, inside words,
next to whitespace and next to each other.
"""

from __future__ import annotations

import copy
import json

from hypothesis import strategies as st
from tokenizers import Tokenizer

from clusterclip.tokens.fast import PRETOKENIZER_FAMILIES

OTHER_REGEXES = [r"\p{L}+|[^\p{L}]", r"\s+", r"[A-Za-z]+|\d+|\s+|[^\sA-Za-z\d]+", PRETOKENIZER_FAMILIES["gpt2"] + "|x"]
DEEPSEEK_V3_SPLITS = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    # as in the published file: CR and LF are the characters themselves, not escapes
    '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+'
    '| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+',
]

NORMALIZERS = [
    None, {"type": "NFC"}, {"type": "Sequence", "normalizers": []}, {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
    {"type": "NFKC"}, {"type": "NFD"}, {"type": "Lowercase"}, {"type": "Strip", "strip_left": True, "strip_right": True},
    {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]},
]
BEHAVIORS = ["Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"]

ADDED_POOL = ["qzx", "é", "café", "cafe\u0301", "\u0301", "e", "<|edge|>", "<tool_call>", "<s>", "s>x", ">x", "edge",
              " def", "def", "de", "x y", "\n", " ", "  ", "the", "The", "ing", "\u1100", "\u1161", "\uac00", "12",
              "<|endoftext|>", "|>", "ab", "abc", "bc", "a"]
SPECIAL_POOL = ["<|endoftext|>", "<|edge|>", "<s>", "[CLS]", "<|im_end|>"]
FRAGMENTS = [*SPECIAL_POOL, *ADDED_POOL, "1qzx", "qzxqzx", " qzx ", "café!", "e\u0301", "\u1100\u1161", "Hello world", "  ", "\t",
             "\r\n", "\n\n", "'s", "x", "1234", "中文", "😀", "a/b", "...", "\u00a0", "İ", "ß", "ﬁ", "\u212b", "1", "."]
TEXT = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(alphabet="ab e\n.1'é\u0301<|>", max_size=5)),
                max_size=14).map("".join)


def byte_level(draw) -> dict:
    return {"type": "ByteLevel", "add_prefix_space": draw(st.booleans()), "trim_offsets": draw(st.booleans()),
            "use_regex": draw(st.booleans())}


@st.composite
def pre_tokenizers(draw, allowed_only: bool = False) -> dict | None:
    if allowed_only:
        kind = draw(st.sampled_from(["bytelevel", "family", "deepseek_v3"]))
    else:
        kind = draw(st.sampled_from(["bytelevel", "family", "family", "deepseek_v3", "other", "digits", "none"]))
    if kind == "none":
        return None
    if kind == "bytelevel":
        bl = byte_level(draw)
        if allowed_only:
            bl.update(add_prefix_space=False, use_regex=True)
        return bl
    if kind == "digits":
        return {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": draw(st.booleans())},
                                                       byte_level(draw)]}
    if kind == "deepseek_v3":
        splits = DEEPSEEK_V3_SPLITS
    elif kind == "family":
        # GPT-2's regex is run as ByteLevel(use_regex=True); as a Split it is not in the allow-list
        names = [n for n in sorted(PRETOKENIZER_FAMILIES) if not (allowed_only and n == "gpt2")]
        splits = [PRETOKENIZER_FAMILIES[draw(st.sampled_from(names))]]
    else:
        splits = [draw(st.sampled_from(OTHER_REGEXES))]
    seq = []
    for regex in splits:
        behavior = "Isolated" if allowed_only else draw(st.sampled_from(BEHAVIORS + ["Isolated"] * 4))
        invert = False if allowed_only else draw(st.booleans())
        seq.append({"type": "Split", "pattern": {"Regex": regex}, "behavior": behavior, "invert": invert})
    bl = byte_level(draw)
    if allowed_only:
        bl.update(add_prefix_space=False, use_regex=False)
    return {"type": "Sequence", "pretokenizers": [*seq, bl]}


@st.composite
def added_tokens(draw, base: dict, allowed_only: bool = False, normalizes: bool = False) -> list[dict]:
    """Added tokens as written in a file: the base's own specials, then 0-6 drawn ones.

    ``allowed_only``: within the allow-list (``normalizes``: the normalizer changes text).
    """
    vocab = base["model"]["vocab"]
    out = copy.deepcopy(base["added_tokens"])
    next_id = max(vocab.values()) + 1
    in_vocab = sorted(vocab)[:: max(1, len(vocab) // 50)]
    for _ in range(draw(st.integers(0, 6))):
        special = draw(st.booleans())
        if allowed_only:  # specials that cannot hide a non-special token, which are never single_word
            pool = SPECIAL_POOL if special else [c for c in ADDED_POOL + in_vocab if not _hidden(c)]
        else:
            pool = ADDED_POOL + in_vocab
        content = draw(st.sampled_from(pool))
        flags = {"single_word": draw(st.booleans()), "lstrip": draw(st.booleans()), "rstrip": draw(st.booleans()),
                 "normalized": draw(st.booleans()), "special": special}
        if allowed_only and not special:
            flags.update(single_word=False, lstrip=False, rstrip=False)
            if normalizes:
                flags["normalized"] = False
        where = draw(st.sampled_from(["next", "next", "far", "vocab", "duplicate"]))
        tid = {"next": next_id, "far": 65535, "vocab": vocab.get(content, next_id),
               "duplicate": out[-1]["id"] if out else next_id}[where]
        next_id += 1
        out.append({"id": tid, "content": content, **flags})
    return out


def _hidden(content: str) -> bool:
    """Would a match of a special token of SPECIAL_POOL hide ``content`` (contain it or end with its start)?"""
    return any(content in s or any(content.startswith(s[i:]) for i in range(1, len(s))) for s in SPECIAL_POOL)


@st.composite
def configurations(draw, bases: dict[bool, dict], allowed_only: bool = False, any_added: bool = False) -> str:
    """A ``tokenizer.json`` text (loadable by ``tokenizers``).

    ``allowed_only``: drawn from the parts the fast path runs only (the allow-list's
    pre-tokenizers, normalizers and model flags; added-token flags other than
    ``single_word``, ``lstrip`` and ``rstrip``); otherwise from everything above.
    """
    base = bases[draw(st.booleans())]
    data = copy.deepcopy(base)
    # otherwise each part is still drawn from the allow-list half of the time, so that the rest of a
    # configuration (added tokens above all) also meets the fast path
    data["normalizer"] = draw(st.sampled_from(NORMALIZERS[:4] if allowed_only or draw(st.booleans()) else NORMALIZERS))
    data["pre_tokenizer"] = draw(pre_tokenizers(allowed_only or draw(st.booleans())))
    if not allowed_only and draw(st.booleans()):
        model_flag = draw(st.sampled_from([None] * 6 + ["byte_fallback", "continuing_subword_prefix",
                                                        "end_of_word_suffix"]))
        if model_flag == "byte_fallback":
            data["model"]["byte_fallback"] = True
        elif model_flag == "continuing_subword_prefix":
            data["model"]["continuing_subword_prefix"] = "##"
        elif model_flag == "end_of_word_suffix":
            data["model"]["end_of_word_suffix"] = "</w>"
    normalizes = data["normalizer"] not in (None, {"type": "Sequence", "normalizers": []})
    data["added_tokens"] = draw(added_tokens(base, allowed_only and not any_added, normalizes))
    return json.dumps(data, ensure_ascii=False)


@st.composite
def texts_for(draw, json_text: str, max_texts: int = 4) -> list[str]:
    """A batch of texts for one configuration: its added tokens' contents (as written, NFD,
    NFC, upper case), pieces of them, and letters, digits, whitespace and marks around them."""
    import unicodedata

    contents = [a["content"] for a in json.loads(json_text)["added_tokens"]]
    forms = {f for c in contents for f in (c, unicodedata.normalize("NFD", c), unicodedata.normalize("NFC", c),
                                           c.upper(), c[:-1], c[1:]) if f}
    around = st.sampled_from(["a", "1", " ", "  ", "\n", "\u0301", "e", "x", "<", ">", "|", "s", ".", "\t", "é", "\u1161"])
    piece = st.one_of(st.sampled_from(sorted(forms)), around) if forms else around
    text = st.lists(st.one_of(piece, piece, TEXT), max_size=12).map("".join)
    return draw(st.lists(text, min_size=1, max_size=max_texts))


def train_base(texts: list[str], ignore_merges: bool, vocab_size: int = 700) -> dict:
    """A byte-level BPE trained on ``texts``, as a ``tokenizer.json`` dict (specials in the vocabulary)."""
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<s>"],
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return json.loads(tok.to_str())


def reference(json_text: str) -> Tokenizer | None:
    """``tokenizers`` as clusterclip runs it (special-token strings are text), or None if it refuses the file."""
    try:
        tok = Tokenizer.from_str(json_text)
    except BaseException as e:  # noqa: BLE001 - a configuration tokenizers refuses, or panics on (Rust)
        if not isinstance(e, Exception) and type(e).__name__ != "PanicException":
            raise
        return None
    tok.encode_special_tokens = True
    return tok
