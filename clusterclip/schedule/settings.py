"""Settings of the ``schedule`` step (see ``clusterclip schedule --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..cache import token_cache_setting
from ..engines import check_engine, engine_setting, ray_address_setting
from ..errors import InputError
from ..settings import REHASH_HELP, Settings, setting
from ..tokens.build import WORKERS
from ..tokens.tokenizer import check_convention
from .law import GAP_UNITS
from .sampling import BALANCES, SAMPLERS

DEFAULT_SHARD_TOKENS = 100_000_000
DEFAULT_MAX_REPEATS = 4
MAX_REPEATS_LIMIT = 1 << 20
#: the largest token budget (--tokens, --budget-tokens): 10**15, far above any corpus, exact in float64
MAX_TOKEN_BUDGET = 10**15
#: settings added with token balancing: left out of the manifest at these values, so the record (and
#: the job's identity) of a schedule that uses none of them is what it was before
BALANCE_DEFAULTS = {"balance": "samples", "weights": None, "cluster_max_repeats": None, "budget_tokens": None,
                    "doc_weight_column": None, "doc_weight_power": 1.0, "dedup_threshold": None,
                    # changing course (stages, the repeat gap, continuing an order)
                    "stages": None, "min_repeat_gap": 0, "repeat_gap_unit": "samples", "continue_from": None,
                    "at_sample": None, "at_tokens": None}


def _formats_help() -> str:
    from ..shards import formats_help

    return "Shard formats, comma-separated. " + formats_help() + "."


def _conventions() -> tuple[str, ...]:
    from ..tokens.tokenizer import CONVENTIONS

    return tuple(CONVENTIONS)


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
    tokens: int | None = setting(None, flag="--tokens", kind=int, min=1, max=MAX_TOKEN_BUDGET, optional=True,
                                 group="sampling",
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
        help="Token streams (bin, raw, datatrove): set W to the loader's global batch in tokens (all GPUs, one "
             "step: llm.c B*T*GPUs, OLMo-core global_batch_size; datatrove/nanotron a multiple of seq_len+1). "
             "Every shard then holds a multiple of W tokens plus one look-ahead token (the next shard's first), so "
             "the loader drops nothing, not even a last partial batch; samples may span shards; the last shard is "
             "padded with EOS (or BOS).")
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
    # balancing (README "Balancing tokens, weights and budgets"); left out of the record at their defaults
    balance: str = setting("samples", flag="--balance", kind=str, choices=BALANCES, group="sampling",
                           help="What the cluster weights share out: samples (cluster k drawn ∝ w_k) or tokens "
                                "(drawn ∝ w_k / its mean sample length, so its expected share of the tokens is "
                                "∝ w_k). tokens needs --tokenizer.")
    weights: str | None = setting(None, flag="--weights", kind=str, optional=True, group="sampling", metavar="FILE",
                                  help="Per-cluster weights (Parquet, CSV or JSON: cluster, weight[, max_repeats]) "
                                       "multiplying each cluster's weight; weight 0 leaves a cluster out; unlisted "
                                       "clusters keep weight 1.")
    cluster_max_repeats: str | None = setting(None, flag="--cluster-max-repeats", kind=str, optional=True,
                                              group="sampling", metavar="K=R,...",
                                              help="Per-cluster clips, e.g. 3=1,7=2 (over --max-repeats and the "
                                                   "max_repeats of --weights).")
    budget_tokens: int | None = setting(None, flag="--budget-tokens", kind=int, min=1, max=MAX_TOKEN_BUDGET,
                                        optional=True, group="sampling", metavar="T",
                                        help="Budget: T tokens split over the clusters by weight (largest "
                                             "remainder); each cluster stops at its share or its clip, all "
                                             "interleaved. Needs --tokenizer.")
    doc_weight_column: str | None = setting(None, flag="--doc-weight-column", kind=str, optional=True,
                                            group="sampling", metavar="COL|FILE",
                                            help="Document scores: a numeric column of the corpus, or a Parquet/CSV/"
                                                 "JSON file of doc_id, score. Each pass of a cluster draws its "
                                                 "documents ∝ score**beta without replacement.")
    doc_weight_power: float = setting(1.0, flag="--doc-weight-power", kind=float, min=0, max=16, group="sampling",
                                      metavar="BETA", help="The exponent beta of --doc-weight-column.")
    dedup_threshold: float | None = setting(None, flag="--dedup-threshold", kind=float, min=0, max=1, min_open=True,
                                            optional=True, group="sampling", metavar="COS",
                                            help="Semantic deduplication (SemDeDup) inside each cluster before "
                                                 "sampling: of documents whose cosine exceeds COS (e.g. 0.95), keep "
                                                 "one.")
    exclude: str | None = setting(None, flag="--exclude", kind=str, optional=True, record=False, group="sampling",
                                  metavar="EVAL",
                                  help="A `clusterclip holdout` directory of this EMB and CL: its documents are "
                                       "never drawn (checked); its path and digest are recorded as an input.")
    # changing course (README "Staged schedules and changing course"); left out of the record at their defaults
    stages: str | None = setting(None, flag="--stages", kind=str, optional=True, group="sampling", metavar="FILE",
                                 help="Stages (TOML, YAML or JSON: [[stage]] tables; or [[schedule.stage]] in "
                                      "--config), each until a fraction of the budget (until = 0.25), a sample "
                                      "(until_sample) or a token count (until_tokens), with its own sampler, alpha, "
                                      "balance, max_repeats, weights, cluster_max_repeats and doc_weight_power (the "
                                      "options given here are every stage's defaults). The clip counts over the "
                                      "whole order.")
    min_repeat_gap: int = setting(0, flag="--min-repeat-gap", kind=int, min=0, max=MAX_TOKEN_BUDGET,
                                  group="sampling", metavar="G",
                                  help="No document reappears within G samples (--repeat-gap-unit tokens: tokens) "
                                       "of its last use; 0: no gap.")
    repeat_gap_unit: str = setting("samples", flag="--repeat-gap-unit", kind=str, choices=GAP_UNITS,
                                   group="sampling", help="What --min-repeat-gap counts (tokens needs --tokenizer).")
    continue_from: str | None = setting(None, flag="--continue", kind=str, optional=True, group="sampling",
                                        metavar="OLD",
                                        help="Continue the schedule directory OLD: its first --at-sample N samples "
                                             "(or up to --at-tokens T) exactly, shards byte-identical up to the "
                                             "shard holding that point, then these settings; the clip counts what "
                                             "the prefix used. Same EMB, CL, tokenizer and shard settings as OLD.")
    at_sample: int | None = setting(None, flag="--at-sample", kind=int, min=0, max=2**62, optional=True, group="sampling",
                                    metavar="N", help="With --continue: keep OLD's first N samples.")
    at_tokens: int | None = setting(None, flag="--at-tokens", kind=int, min=1, max=MAX_TOKEN_BUDGET, optional=True,
                                    group="sampling", metavar="T",
                                    help="With --continue: keep OLD's samples up to the first that brings the "
                                         "total to T tokens (delimiters included).")
    # how it runs, not what it computes (not part of the job's identity)
    token_cache: str | None = token_cache_setting()
    workers: int | None = setting(None, flag=WORKERS.flag, kind=int, min=WORKERS.min, max=WORKERS.max, optional=True,
                                  record=False,
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
        budgets = [f for f, v in (("--epochs", self.epochs), ("--samples", self.samples), ("--tokens", self.tokens),
                                  ("--budget-tokens", self.budget_tokens)) if v is not None]
        if len(budgets) > 1:
            raise InputError(f"{' and '.join(budgets)}: give at most one budget")
        if not self.dry_run and not self.tokenizer:
            raise InputError("--tokenizer: required to write shards (a tokenizer.json, a HF tokenizer dir or a hub "
                             "name); or pass --dry-run to write only the order")
        if self.tokens is not None and not self.tokenizer:
            raise InputError("--tokens: a token budget needs --tokenizer to count tokens, even with --dry-run")
        for flag, needed in (("--balance tokens", self.balance == "tokens"),
                             ("--budget-tokens", self.budget_tokens is not None)):
            if needed and not self.tokenizer:
                raise InputError(f"{flag}: needs --tokenizer to count every document's tokens, even with --dry-run")
        if self.sampler == "random":
            for flag, used in (("--balance tokens", self.balance == "tokens"), ("--weights", self.weights),
                               ("--cluster-max-repeats", self.cluster_max_repeats),
                               ("--budget-tokens", self.budget_tokens),
                               ("--doc-weight-column", self.doc_weight_column)):
                if used:
                    raise InputError(f"{flag}: the random sampler draws no clusters; use --sampler clusterclip "
                                     f"or uniform")
        if self.cluster_max_repeats is not None and self.sampler != "clusterclip":
            raise InputError("--cluster-max-repeats: only the clusterclip sampler clips; use --sampler clusterclip")
        if self.cluster_max_repeats is not None:
            from .mixing import cluster_repeats_items

            cluster_repeats_items(self.cluster_max_repeats)  # the syntax and ranges; the ids once the clusters are read
        if self.doc_weight_power != BALANCE_DEFAULTS["doc_weight_power"] and self.doc_weight_column is None:
            raise InputError(f"--doc-weight-power {self.doc_weight_power:g}: sharpens the scores of "
                             f"--doc-weight-column, which is not given; give --doc-weight-column or leave it out")
        self._check_course()
        check_convention(self.convention, self.bos_token, self.eos_token)
        from ..shards import check_formats

        formats = check_formats(self.formats, align_tokens=self.align_tokens, pack=self.pack)
        object.__setattr__(self, "formats", formats)

    def _check_course(self) -> None:
        """--stages, --min-repeat-gap and --continue against the other options."""
        course = [f for f, v in (("--stages", self.stages), ("--min-repeat-gap", self.min_repeat_gap),
                                 ("--continue", self.continue_from)) if v]
        if course and self.budget_tokens is not None:
            raise InputError(f"--budget-tokens: per-cluster token budgets cannot be combined with {course[0]}; give "
                             f"a token budget (--tokens) instead")
        if self.min_repeat_gap and self.sampler == "random" and not self.stages:
            raise InputError("--min-repeat-gap: the random sampler draws no clusters to rest; use --sampler "
                             "clusterclip or uniform")
        if self.min_repeat_gap and self.repeat_gap_unit == "tokens" and not self.tokenizer:
            raise InputError("--repeat-gap-unit tokens: needs --tokenizer to count tokens, even with --dry-run")
        at = [f for f, v in (("--at-sample", self.at_sample), ("--at-tokens", self.at_tokens)) if v is not None]
        if self.continue_from is None and at:
            raise InputError(f"{at[0]}: says where to continue an older schedule; give --continue OLD")
        if self.continue_from is not None and len(at) != 1:
            raise InputError("--continue: give where OLD is left, one of --at-sample N or --at-tokens T")
        if self.at_tokens is not None and not self.tokenizer:
            raise InputError("--at-tokens: needs --tokenizer to count OLD's tokens, even with --dry-run")

    def record(self) -> dict:
        r = super().record()
        if self.sampler != "clusterclip":
            r["max_repeats"] = None
        if self.sampler == "random":
            r["alpha"] = None
        for name, default in BALANCE_DEFAULTS.items():  # at their defaults: the record of before these existed
            if r.get(name) == default:
                del r[name]
        if "doc_weight_power" in r and self.doc_weight_column is None:
            del r["doc_weight_power"]
        if self.dry_run:
            r["formats"], r["shard_tokens"], r["align_tokens"], r["pack"] = None, None, None, None
        return r


@dataclass(frozen=True)
class MixturesSettings(Settings):
    """``clusterclip mixtures``: Dirichlet-drawn cluster weights, one dry-run schedule each."""

    step = "mixtures"

    dirichlet: float = setting(1.0, flag="--dirichlet", kind=float, min=0, min_open=True, max=1e6, group="sampling",
                               metavar="A", help="Concentration of the Dirichlet the weights are drawn from (small: "
                                                 "a few clusters dominate; large: near uniform).")
    n: int = setting(8, flag="--n", kind=int, min=1, max=10_000, group="sampling", help="Number of mixtures.")
    sampler: str = setting("clusterclip", flag="--sampler", kind=str, choices=("clusterclip", "uniform"),
                           group="sampling", help="The sampler of every schedule.")
    balance: str = setting("samples", flag="--balance", kind=str, choices=BALANCES, group="sampling",
                           help="What the weights share out (tokens needs --tokenizer).")
    tokenizer: str | None = setting(None, flag="--tokenizer", kind=str, optional=True, group="tokens",
                                    help="Needed for --balance tokens and --budget-tokens.")
    max_repeats: int = setting(DEFAULT_MAX_REPEATS, flag="--max-repeats", kind=int, min=1, max=MAX_REPEATS_LIMIT,
                               group="sampling", help="ClusterClip's clip.")
    epochs: float | None = setting(None, flag="--epochs", kind=float, min=0, min_open=True, max=1e6, optional=True,
                                   group="sampling", help="Budget of each schedule: EPOCHS × N samples.")
    samples: int | None = setting(None, flag="--samples", kind=int, min=1, optional=True, group="sampling",
                                  help="Budget of each schedule: exactly this many samples.")
    budget_tokens: int | None = setting(None, flag="--budget-tokens", kind=int, min=1, max=MAX_TOKEN_BUDGET,
                                        optional=True, group="sampling", metavar="T",
                                        help="Budget of each schedule: T tokens split over the clusters by weight.")
    allow_partial: bool = setting(False, flag="--allow-partial", kind=bool, group="sampling",
                                  help="When the clip cannot meet the budget, write what is possible.")
    seed: int = setting(0, flag="--seed", kind=int, min=0, max=2**63 - 1, group="sampling",
                        help="Seed of the weights and of every schedule.")
    token_cache: str | None = token_cache_setting()

    def schedule_options(self) -> dict:
        """The ``schedule`` settings every mixture shares (all but the weights)."""
        return {f: getattr(self, f) for f in ("sampler", "balance", "tokenizer", "max_repeats", "epochs", "samples",
                                              "budget_tokens", "allow_partial", "seed", "token_cache")}
