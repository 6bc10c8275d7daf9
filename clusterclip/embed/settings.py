"""Settings of the ``embed`` step (see ``clusterclip embed --help`` for each one)."""

from __future__ import annotations

from dataclasses import dataclass

from ..engines import check_engine, engine_setting, ray_address_setting
from ..errors import InputError
from ..readers.base import RESERVED_COLUMNS
from ..settings import Settings, setting
from .encoder import DTYPES, ENCODERS

DEFAULT_MAX_LENGTH = 256
DEFAULT_PART_DOCS = 100_000
DEFAULT_WINDOW_DOCS = 4096
DEFAULT_PARTITION_BLOCK = 1024
LONG_DOCS = ("truncate", "chunk-mean")
SAVE_DTYPES = ("float32", "float16")
PACKING = ("auto", "on", "off")


@dataclass(frozen=True)
class EmbedSettings(Settings):
    step = "embed"

    # what is read
    text_column: str = setting("text", flag="--text-column", kind=str)
    id_column: str | None = setting(None, flag="--id-column", kind=str, optional=True)
    limit: int | None = setting(None, flag="--limit", kind=int, min=1, optional=True)
    # the encoder
    backend: str = setting("hf", flag="--encoder", kind=str, choices=tuple(ENCODERS))
    model: str | None = setting(None, flag="--model", kind=str, optional=True)
    max_length: int = setting(DEFAULT_MAX_LENGTH, flag="--max-length", kind=int, min=4, max=1 << 20)
    long_docs: str = setting("truncate", flag="--long-docs", kind=str, choices=LONG_DOCS)
    prompt_name: str | None = setting(None, flag="--prompt-name", kind=str, optional=True)
    device: str = setting("auto", flag="--device", kind=str)
    dtype: str = setting("auto", flag="--dtype", kind=str, choices=DTYPES)
    batch_tokens: int | None = setting(None, flag="--batch-tokens", kind=int, min=1, optional=True)
    batch_size: int | None = setting(None, flag="--batch-size", kind=int, min=1, optional=True)
    packing: str = setting("auto", flag="--packing", kind=str, choices=PACKING)
    compile: bool = setting(False, flag="--compile", kind=bool)
    trust_remote_code: bool = setting(False, flag="--trust-remote-code", kind=bool)
    # the output
    save_dtype: str = setting("float32", flag="--save-dtype", kind=str, choices=SAVE_DTYPES)
    part_docs: int = setting(DEFAULT_PART_DOCS, flag="--part-docs", kind=int, min=1)
    window_docs: int = setting(DEFAULT_WINDOW_DOCS, flag="--window-docs", kind=int, min=1)
    # work split over several jobs (Slurm arrays, torchrun), merged by `clusterclip merge`
    num_partitions: int = setting(1, flag="--num-partitions", kind=int, min=1, max=1 << 20)
    partition_index: int = setting(0, flag="--partition-index", kind=int, min=0)
    partition_block: int = setting(DEFAULT_PARTITION_BLOCK, flag="--partition-block", kind=int, min=1)
    # how inputs are checked (not part of the job's identity)
    rehash_inputs: bool = setting(False, flag="--rehash-inputs", kind=bool, record=False)
    # where it runs (not part of the job's identity: the engine never changes the result)
    engine: str = engine_setting()
    ray_address: str | None = ray_address_setting()
    ray_actors: int | None = setting(None, flag="--ray-actors", kind=int, min=1, optional=True, record=False)

    def validate(self) -> None:
        check_engine(self)
        if self.engine == "ray":
            for flag, value in (("--num-partitions", self.num_partitions > 1), ("--limit", self.limit is not None)):
                if value:
                    raise InputError(f"{flag}: not with --engine ray (Ray spreads the whole corpus over the cluster); "
                                     f"leave it out, or use --engine local")
        if self.partition_index >= self.num_partitions:
            raise InputError(f"--partition-index {self.partition_index}: must be below --num-partitions "
                             f"{self.num_partitions} (0..{self.num_partitions - 1})")
        if self.id_column is not None and self.id_column in RESERVED_COLUMNS:
            raise InputError(f"--id-column {self.id_column!r}: docs.parquet has its own column of that name "
                             f"({', '.join(RESERVED_COLUMNS)}); rename the column in the corpus")
        if self.backend != "hf":
            for flag, value, default in (("--long-docs", self.long_docs, "truncate"), ("--packing", self.packing, "auto"),
                                         ("--batch-tokens", self.batch_tokens, None), ("--compile", self.compile, False)):
                if value != default:
                    raise InputError(f"{flag}: only the hf encoder uses it; leave it out with --encoder {self.backend}")
        elif self.prompt_name is not None:
            raise InputError("--prompt-name: only --encoder sentence-transformers uses prompts; leave it out")
        if self.device.lower() != "auto" and not (self.device.lower() in ("cpu", "cuda", "mps")
                                                   or self.device.lower().startswith("cuda:")):
            raise InputError(f"--device {self.device}: not a device; use auto, cpu, cuda or cuda:N")

    @property
    def partitioned(self) -> bool:
        return self.num_partitions > 1
