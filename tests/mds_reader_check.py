"""Read an MDS directory with the real ``streaming.StreamingDataset`` and dump what it yields.

Runs in the separate MosaicML Streaming environment (``scripts/setup_mds_env.sh`` builds
``.venv-mds``), not in the project's: mosaicml-streaming 0.13 pins numpy<2.2 and
transformers<5. Usage::

    .venv-mds/bin/python tests/mds_reader_check.py OUT.json MDS_DIR [MDS_DIR ...] [--workers 2] [--batch-size 4]

Writes ``{"streaming_version": ..., "datasets": {MDS_DIR: {"len", "direct", "dataloader",
"random_access_last"}}}`` where each item is
``[doc_id, cluster, repeat, dtype, [tokens...]]`` (a ``--pack`` row:
``["packed", [positions...], [cu_seqlens...], dtype, [tokens...]]``), in the order the reader yields them:
``direct`` iterates the dataset itself, ``dataloader`` goes through a
``torch.utils.data.DataLoader`` with ``--workers`` worker processes.

torchvision: ``streaming/__init__.py`` imports ``streaming.vision`` (its image datasets), which
imports torchvision at import time. PyPI's torchvision wheels need the CUDA build of torch
(their ``_C.so`` links libtorch_cuda), which the CPU-only environment here does not have, and
nothing in ``StreamingDataset`` or the MDS reader uses torchvision. So when torchvision does
not import, this script registers an inert placeholder module for it before importing
streaming; the dataset, the MDS decoding and the DataLoader are the real ones.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import sys
import types


def _placeholder_torchvision() -> None:
    try:
        import torchvision  # noqa: F401

        return
    except Exception:  # noqa: BLE001 - missing, or a CUDA-only build that cannot load
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]

    def module(name: str) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)
        sys.modules[name] = m
        return m

    tv, datasets, transforms, functional = (module(n) for n in (
        "torchvision", "torchvision.datasets", "torchvision.transforms", "torchvision.transforms.functional"))

    class VisionDataset:  # only subclassed by streaming.vision, never used by StreamingDataset
        def __init__(self, *a, **k):
            raise RuntimeError("torchvision placeholder: streaming.vision datasets are unavailable here")

    def to_tensor(*a, **k):
        raise RuntimeError("torchvision placeholder: streaming.vision datasets are unavailable here")

    datasets.VisionDataset = VisionDataset
    functional.to_tensor = to_tensor
    tv.datasets, tv.transforms, transforms.functional = datasets, transforms, functional


def _item(s: dict) -> list:
    ids = s["tokens"]
    if "cu_seqlens" in s:  # a --pack row
        return ["packed", [int(x) for x in s["positions"]], [int(x) for x in s["cu_seqlens"]], str(ids.dtype),
                [int(x) for x in ids]]
    return [int(s["doc_id"]), int(s["cluster"]), int(s["repeat"]), str(ids.dtype), [int(x) for x in ids]]


def _collate(batch):
    return batch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("mds_dirs", nargs="+")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    args = ap.parse_args()

    _placeholder_torchvision()
    import streaming
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory
    from torch.utils.data import DataLoader

    result = {"streaming_version": streaming.__version__, "datasets": {}}
    for mds_dir in args.mds_dirs:
        res = result["datasets"][mds_dir] = {}
        clean_stale_shared_memory()
        ds = StreamingDataset(local=mds_dir, shuffle=False, batch_size=args.batch_size)
        res["len"] = len(ds)
        res["direct"] = [_item(s) for s in ds]
        res["random_access_last"] = _item(ds[len(ds) - 1]) if len(ds) else None
        del ds
        clean_stale_shared_memory()
        ds = StreamingDataset(local=mds_dir, shuffle=False, batch_size=args.batch_size)
        loader = DataLoader(ds, batch_size=args.batch_size, num_workers=args.workers, collate_fn=_collate)
        res["dataloader"] = [_item(s) for batch in loader for s in batch]
        del loader, ds
    with open(args.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
