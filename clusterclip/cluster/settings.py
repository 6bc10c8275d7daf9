"""Settings of the ``cluster`` step (see ``clusterclip cluster --help``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..engines import check_engine, engine_setting, ray_address_setting
from ..errors import InputError
from ..settings import Settings, setting
from .assignment import DEFAULT_CHUNK_ROWS
from .kmeans import DEFAULT_INIT, DEFAULT_ITERS, DEVICES, INITS


@dataclass(frozen=True)
class ClusterSettings(Settings):
    step = "cluster"

    k: int = setting(flag="--k", kind=int, min=1, max=1 << 30)
    iters: int = setting(DEFAULT_ITERS, flag="--iters", kind=int, min=1, max=100_000)
    seed: int = setting(0, flag="--seed", kind=int, min=0, max=2**31 - 1)
    max_train_points: int | None = setting(None, flag="--max-train-points", kind=int, min=1, optional=True)
    device: str = setting("auto", flag="--device", kind=str, choices=DEVICES)
    init: str = setting(DEFAULT_INIT, flag="--init", kind=str, choices=INITS)
    levels: int = setting(1, flag="--levels", kind=int, min=1, max=2)
    k2: int | None = setting(None, flag="--k2", kind=int, min=1, optional=True)
    # how it runs, not what it computes (kept out of the job's identity)
    chunk_rows: int = setting(DEFAULT_CHUNK_ROWS, flag="--chunk-rows", kind=int, min=1, record=False)
    threads: int | None = setting(None, flag="--threads", kind=int, min=1, max=4096, optional=True, record=False)
    engine: str = engine_setting()  # where the assignment pass runs (training stays here)
    ray_address: str | None = ray_address_setting()

    def validate(self) -> None:
        check_engine(self)
        if self.levels == 1 and self.k2 is not None:
            raise InputError("--k2: only used with --levels 2; add --levels 2 or drop --k2")
        if self.k2 is not None and self.k2 > self.k:
            raise InputError(f"--k2 {self.k2}: the second level needs between 1 and --k ({self.k}) clusters")
        if self.max_train_points is not None and self.max_train_points < self.k:
            raise InputError(f"--max-train-points {self.max_train_points}: must be at least --k ({self.k})")
