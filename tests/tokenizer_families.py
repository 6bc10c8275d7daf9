"""Small real tokenizers of each byte-level BPE family the fast path supports, built locally.

Each is trained on standard-library docstrings with the `tokenizers` library, laid out as the
family's published ``tokenizer.json`` files are: GPT-2 (``ByteLevel`` with its own regex, the
project's demo tokenizer), Llama-3 / cl100k, o200k and Qwen2 (``Split`` with the family regex,
then ``ByteLevel`` without regex; Qwen2 with an NFC normalizer and a non-special added token).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from clusterclip.tokens.fast import PRETOKENIZER_FAMILIES

SPECIALS = ["<|endoftext|>", "<|begin_of_text|>", "<|im_end|>"]


def build_family(name: str, texts: list[str], path: Path, vocab_size: int = 1200, nfc: bool | None = None) -> Path:
    """``tokenizer.json`` of family ``name`` ("gpt2", "cl100k", "o200k", "qwen2") at ``path``.

    ``nfc``: with an NFC normalizer (default: only Qwen2, as published).
    """
    tok = Tokenizer(models.BPE(ignore_merges=name != "gpt2"))
    if name == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PRETOKENIZER_FAMILIES[name]), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    if name == "qwen2" if nfc is None else nfc:
        tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    if name == "qwen2":
        # Qwen's tool tokens are added tokens that are not special, matched on the text as written
        tok.add_tokens([AddedToken("<tool_call>", normalized=False)])
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


def hf_reference(path: Path) -> Tokenizer:
    """The reference encoder as clusterclip runs it: special-token strings are plain text."""
    tok = Tokenizer.from_file(str(path))
    tok.encode_special_tokens = True
    return tok


def hf_ids(ref: Tokenizer, text: str) -> list[int]:
    return ref.encode(text, add_special_tokens=False).ids
