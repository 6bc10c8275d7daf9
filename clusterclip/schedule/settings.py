"""Settings of the ``schedule`` step (see ``clusterclip schedule --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..engines import check_engine, engine_setting, ray_address_setting
from ..errors import InputError
from ..settings import Settings, setting
from .sampling import SAMPLERS

DEFAULT_SHARD_TOKENS = 100_000_000
DEFAULT_MAX_REPEATS = 4


def _conventions() -> tuple[str, ...]:
    from ..tokenization import CONVENTIONS

    return tuple(CONVENTIONS)


@dataclass(frozen=True)
class ScheduleSettings(Settings):
    step = "schedule"

    sampler: str = setting("clusterclip", flag="--sampler", kind=str, choices=SAMPLERS)
    max_repeats: int = setting(DEFAULT_MAX_REPEATS, flag="--max-repeats", kind=int, min=1, max=1 << 20)
    alpha: float = setting(0.0, flag="--alpha", kind=float, min=-16, max=16)
    epochs: float | None = setting(None, flag="--epochs", kind=float, min=0, min_open=True, max=1e6, optional=True)
    samples: int | None = setting(None, flag="--samples", kind=int, min=1, optional=True)
    tokens: int | None = setting(None, flag="--tokens", kind=int, min=1, optional=True)
    seed: int = setting(0, flag="--seed", kind=int, min=0, max=2**63 - 1)
    tokenizer: str | None = setting(None, flag="--tokenizer", kind=str, optional=True)
    eos_token: str | None = setting(None, flag="--eos-token", kind=str, optional=True)
    bos_token: str | None = setting(None, flag="--bos-token", kind=str, optional=True)
    convention: str | None = setting(None, flag="--convention", kind=str, choices=_conventions(), optional=True)
    allow_ordinary_delimiter: bool = setting(False, flag="--allow-ordinary-delimiter", kind=bool)
    align_tokens: int | None = setting(None, flag="--align-tokens", kind=int, min=1, max=2**40, optional=True)
    pack: int | None = setting(None, flag="--pack", kind=int, min=1, max=2**31 - 1, optional=True)
    formats: tuple = setting(("bin",), flag="--format", kind=tuple)
    shard_tokens: int = setting(DEFAULT_SHARD_TOKENS, flag="--shard-tokens", kind=int, min=1, max=2**40)
    dry_run: bool = setting(False, flag="--dry-run", kind=bool)
    allow_partial: bool = setting(False, flag="--allow-partial", kind=bool)
    # how it runs, not what it computes (not part of the job's identity)
    workers: int | None = setting(None, flag="--workers", kind=int, min=1, max=4096, optional=True, record=False)
    rehash_inputs: bool = setting(False, flag="--rehash-inputs", kind=bool, record=False)
    # where tokenizing and shard writing run (not part of the job's identity: the bytes are the same)
    engine: str = engine_setting()
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
        if self.convention is not None and (self.eos_token is not None or self.bos_token is not None):
            raise InputError(f"--convention {self.convention}: sets --bos-token and --eos-token; give either the "
                             f"convention or the tokens")
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
