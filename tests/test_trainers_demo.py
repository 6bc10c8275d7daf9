"""What each trainer's loader never yields on the demo, measured, and the README's table of it.

The demo is ``make demo``'s: the standard-library docstrings corpus, the BPE trained on it, embed
``--max-length 128 --dtype float32``, cluster ``--k 64``, schedule ``--epochs 2 --max-repeats 4 --shard-tokens
200000``; each trainer adds the flags of its README section's ``clusterclip schedule`` command.
Its loader (tests/trainer_loaders.py: the real package where it installs) reads the shards once
and every stream token that lands in no batch is counted. The README's table must state these
figures; on a mismatch the test prints the rows to paste.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import trainer_loaders as tl
from test_readme_snippets import README, SECTIONS
from test_shards_mds import _env_python

from helpers import REPO, run_cli, run_process

DEMO_FLAGS = ["--epochs", "2", "--max-repeats", "4", "--shard-tokens", "200000"]
TABLE_TITLE = "| trainer | its loader, as measured | tokens never yielded on the demo |"

#: table row -> (README section, flags changed from the section's command, loader settings, loader)
ROWS = {
    "llm.c": ("### llm.c", {}, "`dataloader.h`, `-b 64 -t 1024`, 8 GPUs",
              lambda out, env: tl.llmc(out, B=64, T=1024, processes=8)),
    "modded-nanogpt": ("### modded-nanogpt", {},
                       "`distributed_data_generator`, 8 ranks × 16,384 tokens, `max_seq_len` 896, "
                       "`TRAIN_MAX_NUM_DOCS` 256",
                       lambda out, env: tl.modded_nanogpt(out, num_tokens=8 * 16384, max_seq_len=896, world_size=8,
                                                          bos_id=env["eos_id"], max_num_docs={16384: 256})),
    "nanoGPT": ("### nanoGPT", {}, "sequential `get_batch`, 12 × 1024",
                lambda out, env: tl.nanogpt(out, batch_size=12, block_size=1024)),
    "OLMo-core": ("### OLMo-core", {}, "`NumpyFSLDataLoader`, global batch 32 × 4096 tokens",
                  lambda out, env: tl.olmo_core(out, 4096, 32 * 4096, env["tmp"] / "olmo")),
    "OLMo-core, `--align-tokens 4096`": ("### OLMo-core", {"--align-tokens": "4096"},
                                          "the same, files cut at the sequence length only",
                                          lambda out, env: tl.olmo_core(out, 4096, 32 * 4096, env["tmp"] / "olmo2")),
    "Megatron-LM": ("### Megatron-LM", {}, "`IndexedDataset`, read in order",
                    lambda out, env: tl.megatron(out)),
    "Hugging Face `datasets`": ("### Hugging Face `datasets` / `Trainer`", {}, "`load_dataset(\"parquet\")`, in order",
                                lambda out, env: tl.hf_datasets(out, env["tmp"] / "hf")),
    "LLM Foundry": ("### MosaicML Composer / LLM Foundry", {},
                    "`StreamingTextDataset`'s `tokens`, `max_seq_len` 2048, batch 8, `drop_last`",
                    lambda out, env: tl.llm_foundry(out, env["mds_py"], 2048, 8, env["tmp"])),
    "litdata": ("### litdata", {}, "`StreamingDataLoader`, 1 spawned worker, batch 8",
                lambda out, env: tl.litdata(out, env["mds_py"], 1, 8, env["tmp"])),
    "nanotron": ("### nanotron (datatrove)", {}, "`DatatroveFolderDataset`, `seq_len` 2048",
                 lambda out, env: tl.datatrove(out, 2048)),
}


def _flags(section: str, changes: dict) -> list[str]:
    flags = next(f for title, f, _ in SECTIONS if title == section)
    flags = list(flags)
    for opt, value in changes.items():
        flags[flags.index(opt) + 1] = value
    given = {a for a in flags if a.startswith("--")}
    demo = []
    for i in range(0, len(DEMO_FLAGS), 2):
        if DEMO_FLAGS[i] not in given:
            demo += DEMO_FLAGS[i: i + 2]
    return demo + flags


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``make demo`` up to the clusters: corpus, tokenizer, embed, cluster."""
    d = tmp_path_factory.mktemp("demo")
    # in their own processes, as `make demo` runs them: the corpus builder reads the docstrings of the
    # live modules, and pytest replaces some (sys.unraisablehook), which would change the corpus
    for script, args in (("build_demo_corpus", ["--out", d / "corpus.jsonl.gz"]),
                         ("train_demo_tokenizer", [d / "corpus.jsonl.gz", "--out", d / "tokenizer.json"])):
        subprocess.run([sys.executable, REPO / "scripts" / f"{script}.py", *map(str, args)], check=True,
                       capture_output=True, timeout=600)
    # embed and cluster too: torch's state left by other tests (threads) moves bf16 sums, hence the order
    run_process("embed", d / "corpus.jsonl.gz", "--out", d / "emb", "--max-length", 128, "--id-column", "id",
                "--dtype", "float32", "-q")
    run_process("cluster", d / "emb", "--out", d / "cl", "--k", 64, "-q")
    return d


def _readme_rows() -> dict[str, str]:
    text = README.read_text("utf-8")
    assert TABLE_TITLE in text, "README: the trainers table is missing"
    rows = {}
    for line in text[text.index(TABLE_TITLE):].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[-1]
    return rows


def _figure(n: int, total: int) -> str:
    return f"{n:,} of {total:,}" + (f" ({100 * n / total:.1f} %)" if n else "")


def _parse_figure(figure: str) -> tuple[int, int]:
    lost, total = re.match(r"([\d,]+) of ([\d,]+)", figure).groups()
    return int(lost.replace(",", "")), int(total.replace(",", ""))


@pytest.mark.slow
def test_readme_table_states_what_each_loader_never_yields_on_the_demo(demo, tmp_path):
    from tokenizers import Tokenizer

    eos_id = Tokenizer.from_file(str(demo / "tokenizer.json")).token_to_id("<|endoftext|>")
    env = {"eos_id": eos_id, "tmp": tmp_path, "mds_py": _env_python()}
    measured, runs = {}, {}
    for name, (section, changes, _how, loader) in ROWS.items():
        flags = _flags(section, changes)
        out = runs.get(tuple(flags))
        if out is None:
            out = runs[tuple(flags)] = tmp_path / f"run{len(runs)}"
            run_cli(["schedule", demo / "emb", demo / "cl", "--out", out, "--tokenizer", demo / "tokenizer.json",
                     *flags])
        stream = loader(out, env)
        measured[name] = (stream.never_yielded(), stream.total)
    want = {name: _figure(*m) for name, m in measured.items()}
    table = "\n".join(f"| {name} | {ROWS[name][2]} | {want[name]} |" for name in ROWS)
    # The demo embeds in float32 on every CPU, but another CPU's float32 kernels sum in another order,
    # which can move a few documents between clusters, hence the order: zero must stay zero; the others (a partial batch's tail, which moves token
    # for token with the stream's length) within 1 % of the stream.
    stated = _readme_rows()
    fix = f"README's trainers table should read:\n{TABLE_TITLE}\n|---|---|---|\n{table}"
    assert list(stated) == list(want), fix
    for name, (lost, total) in measured.items():
        said_lost, said_total = _parse_figure(stated[name])
        assert (said_lost == 0) == (lost == 0), f"{name}: {fix}"
        assert abs(said_lost - lost) <= 0.01 * total and abs(said_total - total) <= 0.01 * total, f"{name}: {fix}"
    # what the flags are for: aligned token streams and row formats read in order lose nothing
    for name in ("llm.c", "nanoGPT", "OLMo-core", "Megatron-LM", "Hugging Face `datasets`", "litdata", "nanotron"):
        assert measured[name][0] == 0, name
    assert measured["OLMo-core, `--align-tokens 4096`"][0] > 0  # the last partial global batch


@pytest.mark.slow
def test_modded_nanogpt_convention_cuts_a_small_corpus_into_two_files(demo, tmp_path):
    """The demo's stream is far below the default --shard-tokens: one file, on which the shipped
    generator fails before its first batch; --convention modded-nanogpt cuts it into two that run."""
    common = ["--epochs", "2", "--max-repeats", "4", "--format", "bin"]
    one, two = tmp_path / "one", tmp_path / "two"
    for out, flags in ((one, ["--bos-token", "<|endoftext|>", "--eos-token", "none"]),
                       (two, ["--convention", "modded-nanogpt"])):
        run_cli(["schedule", demo / "emb", demo / "cl", "--out", out, "--tokenizer", demo / "tokenizer.json",
                 *common, *flags])
    assert len(tl.shard_paths(one, "bin/train_*.bin")) == 1
    with pytest.raises(RuntimeError, match="StopIteration"):
        tl.modded_nanogpt(one, 8 * 16384, 896, 8, bos_id=0)
    assert len(tl.shard_paths(two, "bin/train_*.bin")) == 2
    from tokenizers import Tokenizer

    eos_id = Tokenizer.from_file(str(demo / "tokenizer.json")).token_to_id("<|endoftext|>")
    with pytest.raises(RuntimeError, match="The expanded size of the tensor \\(63\\)"):  # the shipped 64 rows
        tl.modded_nanogpt(two, 8 * 16384, 896, 8, bos_id=eos_id)
    assert tl.modded_nanogpt(two, 8 * 16384, 896, 8, bos_id=eos_id, max_num_docs={16384: 256}).never_yielded() > 0


def test_readme_table_has_a_row_per_trainer_section():
    rows = _readme_rows()
    assert list(rows) == list(ROWS)
    for name, figure in rows.items():
        assert re.fullmatch(r"[\d,]+ of [\d,]+( \(\d+\.\d %\))?", figure), (name, figure)
    titles = {t for t, _, _ in SECTIONS}
    assert {section for section, *_ in ROWS.values()} <= titles

