"""Settings of the held-out set and of proxy training (``clusterclip holdout --help``, ``clusterclip proxy --help``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InputError
from ..settings import Settings, setting
from .heldout import DEFAULT_PER_CLUSTER, FRACTION, PER_CLUSTER

#: how a proxy reads a schedule's shards: the token streams a trainer reads sequentially
STREAM_FORMATS = ("bin", "raw")
DEVICES_HELP = "auto (CUDA when torch sees a GPU, else the CPU), cpu, cuda or cuda:N."
DTYPES = ("auto", "float32", "bfloat16")
COMPILE = ("auto", "on", "off")
#: ``--compile auto`` compiles runs of at least this many steps (compiling costs about a minute on 2 cores)
COMPILE_MIN_STEPS = 200
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


@dataclass(frozen=True)
class HoldoutSettings(Settings):
    step = "holdout"

    per_cluster: int | None = setting(None, flag=PER_CLUSTER.flag, kind=int, min=1, max=PER_CLUSTER.max,
                                      optional=True, group="sampling",
                                      help=f"Documents held out per cluster [default: {DEFAULT_PER_CLUSTER}]; a "
                                           f"cluster always keeps at least one document for training.")
    fraction: float | None = setting(None, flag=FRACTION.flag, kind=float, min=0, min_open=True, max=FRACTION.max,
                                     optional=True, group="sampling",
                                     help="Instead of --per-cluster: this share of each cluster (rounded, at least "
                                          "one document).")
    seed: int = setting(0, flag="--seed", kind=int, min=0, max=2**31 - 1, group="sampling",
                        help="Seed of the draw inside each cluster.")
    target: str | None = setting(None, flag="--target", kind=str, optional=True, group="input", metavar="FILE",
                                 help="A JSON lines or Parquet file of texts you care about (CLIMB's target "
                                      "domain), scored as one more group beside the clusters.")
    target_column: str = setting("text", flag="--target-column", kind=str, group="input",
                                 help="The text column (key) of --target.")

    def validate(self) -> None:
        if self.per_cluster is not None and self.fraction is not None:
            raise InputError("--per-cluster and --fraction: give one of them")


@dataclass(frozen=True)
class ProxySettings(Settings):
    """How each proxy is trained and scored. Every run of a comparison uses the same settings."""

    step = "proxy"

    eval_dir: str | None = setting(None, flag="--eval", kind=str, optional=True, record=False, group="input",
                               metavar="EVAL",
                               help="The `clusterclip holdout` directory to score on (required; every schedule must "
                                    "have been written with `schedule --exclude EVAL`). Its path and digest are "
                                    "recorded as an input.")
    seeds: int = setting(1, flag="--seeds", kind=int, min=1, max=1000, group="model",
                         help="Runs per schedule, from the initial weights of --seed, --seed + 1, ...: every "
                              "comparison then states the mean and the spread over seeds.")
    format: str = setting("bin", flag="--format", kind=str, choices=STREAM_FORMATS, group="input",
                          help="The shards read, as their trainer reads them: bin (llm.c's loader, shuffling off) or "
                               "raw (nanoGPT's sequential get_batch): per file, windows of batch x context + 1 "
                               "tokens, one step apart.")
    context: int = setting(256, flag="--context", kind=int, min=8, max=1 << 20, group="model",
                           help="Tokens per sequence (the model's context length), in training and in scoring.")
    batch: int = setting(16, flag="--batch", kind=int, min=1, max=1 << 20, group="model",
                         help="Sequences per optimizer step.")
    tokens: int | None = setting(None, flag="--tokens", kind=int, min=1, optional=True, group="model",
                                 help="Tokens each proxy trains on (whole steps) [default: what the smallest "
                                      "schedule gives in one pass]; beyond a schedule's end the loader starts it "
                                      "again, as llm.c does.")
    lr: float = setting(2e-3, flag="--lr", kind=float, min=0, min_open=True, max=10, group="model",
                        help="Peak learning rate (AdamW, linear warm-up, cosine decay to --min-lr-ratio of it).")
    min_lr_ratio: float = setting(0.1, flag="--min-lr-ratio", kind=float, min=0, max=1, group="model",
                                  help="The final learning rate as a share of --lr.")
    warmup: float = setting(0.05, flag="--warmup", kind=float, min=0, max=1, group="model",
                            help="Share of the steps spent warming the learning rate up.")
    weight_decay: float = setting(0.1, flag="--weight-decay", kind=float, min=0, max=10, group="model",
                                  help="AdamW weight decay (on matrices, not on norms).")
    grad_clip: float = setting(1.0, flag="--grad-clip", kind=float, min=0, group="model",
                               help="Clip the gradient's global norm to this (0: no clipping).")
    seed: int = setting(0, flag="--seed", kind=int, min=0, max=2**31 - 1, group="model",
                        help="Seed of the initial weights (the same for every schedule of a run).")
    model_config: str | None = setting(None, flag="--model-config", kind=str, optional=True, group="model",
                                       metavar="FILE",
                                       help="A transformers config.json of a causal LM [default: a 4-layer Llama of "
                                            "width 256, 3.4 M parameters plus 256 per vocabulary entry].")
    device: str = setting("auto", flag="--device", kind=str, group="performance", help=DEVICES_HELP)
    dtype: str = setting("auto", flag="--dtype", kind=str, choices=DTYPES, group="performance",
                         help="Training precision: auto is bfloat16 autocast on CUDA and on CPUs with native bf16, "
                              "float32 elsewhere. Weights, optimizer and scoring stay float32.")
    compile: str = setting("auto", flag="--compile", kind=str, choices=COMPILE, group="performance",
                           help=f"torch.compile the training step (fuses the norms, rotary and loss; the losses "
                                f"change in their last digits): auto compiles runs of {COMPILE_MIN_STEPS} steps or "
                                f"more where a C++ compiler (CPU) or Triton (CUDA) is there. Scoring never is.")
    threads: int | None = setting(None, flag="--threads", kind=int, min=1, max=4096, optional=True, record=False,
                                  group="performance",
                                  help="CPU threads of each run [default: the cores over --workers, at least 1]. "
                                       "Losses are identical to the last digit for the same thread count on the "
                                       "same machine; pin it to compare runs made elsewhere.")
    workers: int | None = setting(None, flag="--workers", kind=int, min=1, max=4096, optional=True, record=False,
                                  group="performance",
                                  help="Runs trained at once, each in a process of its own with --threads threads "
                                       "[default on the CPU: one per core (at most one per run); on CUDA: 1]. Small "
                                       "models use cores better side by side than split over threads. The losses "
                                       "depend on --threads, not on --workers.")
    checkpoint_every: int = setting(100, flag="--checkpoint-every", kind=int, min=1, record=False,
                                    group="performance",
                                    help="Steps between checkpoints (a killed run resumes from the last one with "
                                         "the same final losses).")
    eval_batch: int = setting(16, flag="--eval-batch", kind=int, min=1, record=False, group="performance",
                              help="Windows scored at once (does not change the result beyond float rounding).")

    def validate(self) -> None:
        if not _DEVICE.fullmatch(self.device.lower()):
            raise InputError(f"--device {self.device}: not a device; use auto, cpu, cuda or cuda:N")
