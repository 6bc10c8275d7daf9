#!/usr/bin/env bash
# Build .venv-mds: a separate environment with the real MosaicML Streaming reader and litdata, used
# by the tests that read our `mds` shards back (tests/test_shards_mds.py runs
# tests/mds_reader_check.py in it) and by the README's MosaicML and litdata snippets
# (tests/test_readme_snippets.py). It cannot share the main environment: mosaicml-streaming
# 0.13.0 pins numpy<2.2 and transformers<5, and litdata requires torchvision.
#
# Only what `StreamingDataset` imports is installed (streaming itself with --no-deps: its cloud
# SDKs - boto3, google-cloud-storage, azure, oci, paramiko - and matplotlib are never imported
# for a local dataset). torchvision is left out: PyPI's wheels need the CUDA build of torch;
# tests/mds_reader_check.py explains why; an inert `torchvision` stub package is installed instead,
# so `import streaming` / `import litdata` work as written (neither uses torchvision for token data).
# litdata is installed with --no-deps plus what it imports for local Parquet data.
#
#   scripts/setup_mds_env.sh [VENV_DIR] [PYTHON]     (defaults: .venv-mds, .venv/bin/python or python3;
#                                                    PYTHON's torch version is reused when it has torch)
# Takes about a minute (torch is the bulk); rerunning it on a finished env does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-mds}"
PY="${2:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
STAMP="$VENV/.clusterclip-mds-ok"
if [ -f "$STAMP" ] && "$VENV/bin/python" -c "import streaming, litdata" 2>/dev/null; then
  echo "$VENV: ready"; exit 0
fi
# same torch build as the main environment's python when it has one (the CPU wheel here), else 2.13.0
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
v=$("$PY" -c "import torch; print(torch.__version__)" 2>/dev/null || true)
[ -n "$v" ] && TORCH_SPEC="torch==$v"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
# -qq: pip's notes and warnings stay off the terminal (its errors and a failed install still show, and stop
# the script); --no-warn-conflicts: streaming and litdata are installed without the cloud SDKs and the
# torchvision they declare (see above), which pip would otherwise list as broken after every install
INSTALL="$VENV/bin/python -m pip --disable-pip-version-check -qq install --no-warn-conflicts"
$INSTALL "$TORCH_SPEC" "numpy>=1.21.5,<2.2" "transformers>=4.21.3,<5" \
  "brotli>=1.0.9" "python-snappy>=0.6.1,<1" "zstd>=1.5.2.5,<2" "xxhash>=3,<4" \
  "tqdm>=4.64,<5" "catalogue>=2,<3" pillow filelock typing_extensions
$INSTALL --no-deps "mosaicml-streaming==0.13.0" "litdata==0.2.76"
$INSTALL lightning-utilities obstore boto3 tifffile requests "polars>=1" "pyarrow>=14"
# the inert torchvision stub (only when the real one cannot load, i.e. a CPU-only torch wheel)
if ! "$VENV/bin/python" -c "import torchvision" 2>/dev/null; then
  SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  mkdir -p "$SITE/torchvision/transforms"
  cat > "$SITE/torchvision/__init__.py" <<'STUB'
"""Inert torchvision stub of .venv-mds (scripts/setup_mds_env.sh): PyPI's torchvision wheels need the
CUDA build of torch. streaming.vision subclasses VisionDataset at import time; nothing here works."""
__version__ = "0.0-clusterclip-stub"
from . import datasets, transforms  # noqa: E402,F401
STUB
  cat > "$SITE/torchvision/datasets.py" <<'STUB'
class VisionDataset:
    def __init__(self, *a, **k):
        raise RuntimeError("torchvision stub (.venv-mds): image datasets are unavailable here")
STUB
  cat > "$SITE/torchvision/transforms/__init__.py" <<'STUB'
from . import functional  # noqa: F401
STUB
  cat > "$SITE/torchvision/transforms/functional.py" <<'STUB'
def to_tensor(*a, **k):
    raise RuntimeError("torchvision stub (.venv-mds): image transforms are unavailable here")
STUB
fi
"$VENV/bin/python" tests/mds_reader_check.py --help >/dev/null
"$VENV/bin/python" - <<'PY'
from streaming import StreamingDataset  # noqa: F401
import streaming, litdata
print("mosaicml-streaming", streaming.__version__, "and litdata", litdata.__version__, "import")
PY
touch "$STAMP"
echo "$VENV: ready"
