#!/usr/bin/env bash
# Build .venv-mds: a separate environment with the real MosaicML Streaming reader, used only by
# the tests that read our `mds` shards back (tests/test_shards_mds.py runs
# tests/mds_reader_check.py in it). It cannot share the main environment: mosaicml-streaming
# 0.13.0 pins numpy<2.2 and transformers<5.
#
# Only what `StreamingDataset` imports is installed (streaming itself with --no-deps: its cloud
# SDKs - boto3, google-cloud-storage, azure, oci, paramiko - and matplotlib are never imported
# for a local dataset). torchvision is left out: PyPI's wheels need the CUDA build of torch;
# tests/mds_reader_check.py explains the inert placeholder it uses instead.
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
if [ -f "$STAMP" ] && "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('streaming') is None)" 2>/dev/null; then
  echo "$VENV: ready"; exit 0
fi
# same torch build as the main environment's python when it has one (the CPU wheel here), else 2.13.0
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
v=$("$PY" -c "import torch; print(torch.__version__)" 2>/dev/null || true)
[ -n "$v" ] && TORCH_SPEC="torch==$v"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install "$TORCH_SPEC" "numpy>=1.21.5,<2.2" "transformers>=4.21.3,<5" \
  "brotli>=1.0.9" "python-snappy>=0.6.1,<1" "zstd>=1.5.2.5,<2" "xxhash>=3,<4" \
  "tqdm>=4.64,<5" "catalogue>=2,<3" pillow filelock typing_extensions
$PIP install --no-deps "mosaicml-streaming==0.13.0"
"$VENV/bin/python" tests/mds_reader_check.py --help >/dev/null
"$VENV/bin/python" - <<'PY'
import runpy, sys
sys.argv = ["x"]
mod = runpy.run_path("tests/mds_reader_check.py", run_name="not_main")
mod["_placeholder_torchvision"]()
from streaming import StreamingDataset  # noqa: F401
import streaming
print("mosaicml-streaming", streaming.__version__, "imports")
PY
touch "$STAMP"
echo "$VENV: ready"
