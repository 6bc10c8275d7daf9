"""Settings of the ``schedule`` step (see ``clusterclip schedule --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..engines import check_engine, engine_setting, ray_address_setting
from ..errors import InputError
from ..settings import REHASH_HELP, Settings, setting
from .sampling import SAMPLERS

DEFAULT_SHARD_TOKENS = 100_000_000
DEFAULT_MAX_REPEATS = 4
MAX_REPEATS_LIMIT = 1 << 20


def _formats_help() -> str:
    from ..shards import formats_help

    return "Shard formats, comma-separated. " + formats_help() + "."


def _conventions() -> tuple[str, ...]:
    from ..tokenization import CONVENTIONS

    return tuple(CONVENTIONS)


def check_convention(convention: str | None, bos_token: str | None, eos_token: str | None) -> None:
    """``--convention``: a known name, and not together with ``--bos-token`` / ``--eos-token``."""
    if convention is None:
        return
    ScheduleSettings.rules()["convention"].check(convention)
    if eos_token is not None or bos_token is not None:
        raise InputError(f"--convention {convention}: sets --bos-token and --eos-token; give either the "
                         f"convention or the tokens")


@dataclass(frozen=True)
class ScheduleSettings(Settings):
    step = "schedule"

    sampler: str = setting("clusterclip", flag="--sampler", kind=str, choices=SAMPLERS, group="sampling",
                           help="clusterclip: clusters uniformly + repetition clip; uniform: no clip; random: "
                                "per-epoch shuffle.")
    max_repeats: int = setting(DEFAULT_MAX_REPEATS, flag="--max-repeats", kind=int, min=1, max=MAX_REPEATS_LIMIT,
                               group="sampling", help="ClusterClip's clip: no document is used more than this many "
                                                      "times.")
    alpha: float = setting(0.0, flag="--alpha", kind=float, min=-16, max=16, group="sampling",
                           help="Cluster weights ∝ size**alpha: 0 = uniform over clusters (the paper), 1 = by size.")
    epochs: float | None = setting(None, flag="--epochs", kind=float, min=0, min_open=True, max=1e6, optional=True,
                                   group="sampling", help="Budget: EPOCHS × number of documents samples (default: "
                                                          "1 epoch).")
    samples: int | None = setting(None, flag="--samples", kind=int, min=1, optional=True, group="sampling",
                                  help="Budget: exactly this many samples.")
    tokens: int | None = setting(None, flag="--tokens", kind=int, min=1, optional=True, group="sampling",
                                 help="Budget: stop at the first sample that brings the total to this many tokens "
                                      "(delimiters included).")
    seed: int = setting(0, flag="--seed", kind=int, min=0, max=2**63 - 1, group="sampling",
                        help="Seed of every random choice.")
    tokenizer: str | None = setting(None, flag="--tokenizer", kind=str, optional=True, group="tokens",
                                    help="Required unless --dry-run: a tokenizer.json file, a local Hugging Face "
                                         "tokenizer directory, or a hub name.")
    eos_token: str | None = setting(None, flag="--eos-token", kind=str, optional=True, group="tokens",
                                    metavar="TOKEN|none",
                                    help="Special token appended to every sample (a token or an id; default: the "
                                         "tokenizer's EOS); 'none' appends nothing.")
    bos_token: str | None = setting(None, flag="--bos-token", kind=str, optional=True, group="tokens",
                                    metavar="TOKEN",
                                    help="Special token prepended to every sample (a token or an id; default: "
                                         "none).")
    convention: str | None = setting(None, flag="--convention", kind=str, choices=_conventions(), optional=True,
                                     group="tokens",
                                     help="The delimiters a trainer expects, instead of --bos-token/--eos-token: "
                                          "llm.c and modded-nanogpt put the EOS token BEFORE each document and "
                                          "nothing after; the others append EOS (the default).")
    allow_ordinary_delimiter: bool = setting(False, flag="--allow-ordinary-delimiter", kind=bool, group="tokens",
                                             help="Accept an ordinary (non-special) token as --bos-token/"
                                                  "--eos-token, although it also occurs inside documents.")
    align_tokens: int | None = setting(
        None, flag="--align-tokens", kind=int, min=1, max=2**40, optional=True, group="shards", metavar="W",
        help="Token streams (bin, raw, datatrove): every shard holds a multiple of W tokens plus one look-ahead "
             "token (the next shard's first), so a loader reading W = B*T tokens per step drops nothing; samples "
             "may span shards; the last shard is padded with EOS (or BOS).")
    pack: int | None = setting(
        None, flag="--pack", kind=int, min=1, max=2**31 - 1, optional=True, group="shards", metavar="L",
        help="Rows of exactly L tokens cut from the ordered stream (parquet, mds; token streams are cut at whole "
             "rows), with each row's document boundaries (cu_seqlens, positions, doc_ids); the last row is padded "
             "with EOS (or BOS).")
    formats: tuple = setting(("bin",), flag="--format", kind=tuple, group="shards", metavar="FORMAT[,FORMAT...]",
                             help=_formats_help)
    shard_tokens: int = setting(DEFAULT_SHARD_TOKENS, flag="--shard-tokens", kind=int, min=1, max=2**40,
                                group="shards", help="At most this many tokens per shard file.")
    dry_run: bool = setting(False, flag="--dry-run", kind=bool, group="output",
                            help="Write the order and statistics only; no tokenizing, no shards.")
    allow_partial: bool = setting(False, flag="--allow-partial", kind=bool, group="sampling",
                                  help="When the clip cannot meet the budget, write what is possible instead of "
                                       "failing.")
    # how it runs, not what it computes (not part of the job's identity)
    workers: int | None = setting(None, flag="--workers", kind=int, min=1, max=4096, optional=True, record=False,
                                  group="performance",
                                  help="Tokenizer workers [default: every core]; the token store is the same bytes "
                                       "for any number.")
    rehash_inputs: bool = setting(False, flag="--rehash-inputs", kind=bool, record=False, group="input",
                                  help=REHASH_HELP)
    # where tokenizing and shard writing run (not part of the job's identity: the bytes are the same)
    engine: str = engine_setting("tokenizing and shard writing")
    ray_address: str | None = ray_address_setting()

    def validate(self) -> None:
        check_engine(self)
        budgets = [f for f, v in (("--epochs", self.epochs), ("--samples", self.samples), ("--tokens", self.tokens))
                   if v is not None]
        if len(budgets) > 1:
            raise InputError(f"{' and '.join(budgets)}: give at most one budget")
        if not self.dry_run and not self.tokenizer:
            raise InputError("--tokenizer: required to write shards (a tokenizer.json, a HF tokenizer dir or a hub "
                             "name); or pass --dry-run to write only the order")
        if self.tokens is not None and not self.tokenizer:
            raise InputError("--tokens: a token budget needs --tokenizer to count tokens, even with --dry-run")
        check_convention(self.convention, self.bos_token, self.eos_token)
        from ..shards import check_formats

        formats = check_formats(self.formats, align_tokens=self.align_tokens, pack=self.pack)
        object.__setattr__(self, "formats", formats)

    def record(self) -> dict:
        r = super().record()
        if self.sampler != "clusterclip":
            r["max_repeats"] = None
        if self.sampler == "random":
            r["alpha"] = None
        if self.dry_run:
            r["formats"], r["shard_tokens"], r["align_tokens"], r["pack"] = None, None, None, None
        return r
