#!/usr/bin/env bash
# GPU figures in one command, written to one JSON (docs/PERFORMANCE.md reads them):
#
#   bash scripts/bench_gpu.sh [OUT.json]          # default: bench-gpu.json
#
#   1. embed: clusterclip (the transformer encoder, float16 and bfloat16) vs sentence-transformers
#      `encode` on the GPU, same documents, in one process (scripts/bench_embed.py --device cuda);
#   2. k-means: faiss-gpu vs faiss-cpu (train + assign every row) on the same synthetic vectors
#      (scripts/bench_cluster.py's data), interleaved, best of two;
#   3. proxy training (scripts/bench_proxy.py), only where clusterclip/proxy/ exists.
#
# Where CUDA is absent (or faiss has no GPU), each GPU part is skipped with a message saying why,
# recorded in the JSON as {"skipped": "..."}; the script still succeeds (tests/test_bench_gpu.py
# runs it so on CPU). Environment: PYTHON (default: .venv/bin/python if present, else python3),
# EMBED_DOCS (documents for part 1, default 20000), KMEANS_N / KMEANS_K (part 2, default 1000000 / 4096),
# PROXY_ARGS (extra arguments of part 3), BENCH_GPU_QUICK=1 (tiny sizes: a smoke run).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-bench-gpu.json}"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" CLUSTERCLIP_NO_PROGRESS=1
PARTS="$(mktemp -d)"
trap 'rm -rf "$PARTS"' EXIT
if [ "${BENCH_GPU_QUICK:-0}" = 1 ]; then
  EMBED_DOCS=${EMBED_DOCS:-64}; KMEANS_N=${KMEANS_N:-20000}; KMEANS_K=${KMEANS_K:-64}
fi
EMBED_DOCS=${EMBED_DOCS:-20000}; KMEANS_N=${KMEANS_N:-1000000}; KMEANS_K=${KMEANS_K:-4096}

skip() {  # skip PART REASON: say why, record it
  echo "bench_gpu: $1: skipped: $2" >&2
  "$PYTHON" -c 'import json,sys; json.dump({"skipped": sys.argv[2]}, open(sys.argv[1], "w"))' "$PARTS/$1.json" "$2"
}
run_part() {  # run_part PART CMD...: its stdout kept in the JSON beside the figures it wrote
  local part=$1; shift
  echo "bench_gpu: $part: $*" >&2
  if "$@" > "$PARTS/$part.out" 2> "$PARTS/$part.err"; then
    cat "$PARTS/$part.out" >&2
  else
    echo "bench_gpu: $part: failed (exit $?):" >&2; tail -20 "$PARTS/$part.err" >&2
    printf '%s' "failed: $(tail -5 "$PARTS/$part.err")" > "$PARTS/$part.failed"
  fi
}

GPU="$("$PYTHON" -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "")' 2>/dev/null)"
FAISS_GPU="$("$PYTHON" -c 'import faiss; print(faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0)' 2>/dev/null || echo 0)"

# 1. embed on the GPU
if [ -z "$GPU" ]; then
  skip embed "no CUDA GPU visible to torch (torch.cuda.is_available() is False)"
else
  for dtype in float16 bfloat16; do
    run_part "embed-$dtype" "$PYTHON" "$ROOT/scripts/bench_embed.py" --device cuda --dtype "$dtype" \
      --n-docs "$EMBED_DOCS" --repeat 2 --cluster 0 --json "$PARTS/embed-$dtype.json"
  done
fi

# 2. k-means: faiss-gpu vs faiss-cpu
if [ -z "$GPU" ] || [ "${FAISS_GPU:-0}" = 0 ]; then
  skip kmeans "faiss has no GPU here (faiss.get_num_gpus() is ${FAISS_GPU:-0}: install faiss-gpu, \`make install-gpu\`)"
else
  run_part kmeans "$PYTHON" - "$KMEANS_N" "$KMEANS_K" "$PARTS/kmeans.json" <<'PY'
import importlib.util, json, sys, time
from pathlib import Path

import numpy as np

from clusterclip.cluster import assign
from clusterclip.cluster.kmeans import train_spherical_kmeans

n, k, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
root = Path(__import__("os").environ["PYTHONPATH"].split(":")[0])
spec = importlib.util.spec_from_file_location("bench_cluster", root / "scripts" / "bench_cluster.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
x = bench.synthetic_embeddings(n, 384, max(1, k // 4), seed=0)
best = {}
for _ in range(2):  # interleaved, best of two
    for gpu in (True, False):
        t0 = time.perf_counter()
        c = train_spherical_kmeans(x, k, seed=0, gpu=gpu)
        labels, sim = assign(x, c, gpu=gpu, check=False)
        seconds = time.perf_counter() - t0
        name = "faiss-gpu" if gpu else "faiss-cpu"
        if seconds < best.get(name, {}).get("seconds", float("inf")):
            best[name] = {"seconds": seconds, "mean_cosine": float(np.mean(sim))}
ratio = best["faiss-cpu"]["seconds"] / best["faiss-gpu"]["seconds"]
print(f"k-means n={n} k={k} dim=384 (train + assign every row): faiss-gpu {best['faiss-gpu']['seconds']:.2f} s, "
      f"faiss-cpu {best['faiss-cpu']['seconds']:.2f} s: {ratio:.1f}x; mean cosine "
      f"{best['faiss-gpu']['mean_cosine']:.5f} vs {best['faiss-cpu']['mean_cosine']:.5f}")
Path(out).write_text(json.dumps({"n": n, "k": k, "results": best, "ratio": ratio}))
PY
fi

# 3. proxy training, where the proxy package exists
if [ ! -d "$ROOT/clusterclip/proxy" ] || [ ! -f "$ROOT/scripts/bench_proxy.py" ]; then
  skip proxy "no clusterclip/proxy/ (with scripts/bench_proxy.py) in this checkout"
elif [ -z "$GPU" ]; then
  skip proxy "no CUDA GPU visible to torch"
else
  # shellcheck disable=SC2086
  run_part proxy "$PYTHON" "$ROOT/scripts/bench_proxy.py" ${PROXY_ARGS:-}
fi

"$PYTHON" - "$PARTS" "$OUT" "$GPU" <<'PY'
import json, os, subprocess, sys
from pathlib import Path

parts, out, gpu = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
names = sorted({p.name.split(".")[0] for p in parts.iterdir()})
result = {"gpu": gpu or None, "load_average": os.getloadavg()[0],
          "command": "bash scripts/bench_gpu.sh " + str(out), "parts": {}}
for name in names:
    entry = {}
    if (parts / f"{name}.json").is_file():
        entry = json.loads((parts / f"{name}.json").read_text() or "{}")
    if (parts / f"{name}.out").is_file():
        entry["output"] = (parts / f"{name}.out").read_text()[-6000:]
    if (parts / f"{name}.failed").is_file():
        entry["failed"] = (parts / f"{name}.failed").read_text()
    result["parts"][name] = entry
out.write_text(json.dumps(result, indent=2) + "\n")
failed = [n for n, e in result["parts"].items() if "failed" in e]
print(f"bench_gpu: wrote {out} ({', '.join(f'{n}: ' + ('skipped' if 'skipped' in e else 'failed' if 'failed' in e else 'ok') for n, e in result['parts'].items())})")
sys.exit(1 if failed else 0)
PY
