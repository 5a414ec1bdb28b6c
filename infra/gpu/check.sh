#!/usr/bin/env bash
# The GPU figures (embedding, assignment, proxy training) on a lent machine, from the project root after infra/gpu/stage.sh:
#   bash infra/gpu/check.sh          (writes JSON into $OUT; each part runs even if another failed)
# Dry run on a CPU: DEVICE=cpu DOCS=40 ROWS=20000 bash infra/gpu/check.sh
set -u
out=${OUT:-/tmp/gpu-check}
device=${DEVICE:-cuda}
docs=${DOCS:-0}  # 0: all 18,770 demo documents
model=${MODEL:-.gpu/minilm}
py=${PY:-python3}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD:$PWD/.gpu/pylib${PYTHONPATH:+:$PYTHONPATH}" CLIMB_CACHE_DIR="$out/cache"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  $py -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
  $py -c 'import importlib.util as u; print({m: bool(u.find_spec(m)) for m in ("upath", "accelerate", "onnxruntime", "faiss", "polars", "lightgbm", "dagster")})'
} > "$out/machine.txt" 2>&1
bench() {  # name, then bench embed options
  local name=$1; shift
  timeout 150 $py -m climb_dagster.bench embed --device "$device" --docs "$docs" --model-path "$model" "$@" \
    > "$out/$name.json" 2> "$out/$name.err"
  echo "$name rc=$? $(tr -d '\n ' < "$out/$name.json" | head -c 600)"
}
# The pipeline's defaults: batch sizes from the device's free memory, background tokenisation.
bench embed_default
# k-means assignment throughput (issue 13, item 3): faiss-gpu when installed, else torch on CUDA (the lent
# machine has no faiss); 1,000 centroids of MiniLM's 384 dimensions, as at the paper's K_init.
ROWS=${ROWS:-2000000} DEVICE="$device" timeout 200 $py - > "$out/assign.json" 2> "$out/assign.err" <<'PY'
import json, os, time

import numpy as np

from climb_dagster.core.clustering.kmeans import KMeansConfig, assign_backend, assign_clusters

rng = np.random.default_rng(0)
x = rng.standard_normal((int(os.environ["ROWS"]), 384), dtype=np.float32)
c = rng.standard_normal((1000, 384), dtype=np.float32)
cfg = KMeansConfig(device=os.environ["DEVICE"])
assign_clusters(x[:10_000], c, cfg)  # warm-up: CUDA context, kernels
t = time.perf_counter()
assign_clusters(x, c, cfg)
s = time.perf_counter() - t
print(json.dumps({"backend": assign_backend(cfg.device), "rows": len(x), "k": 1000, "dim": 384,
                  "seconds": round(s, 3), "rows_per_s": round(len(x) / s)}))
PY
echo "assign rc=$? $(cat "$out/assign.json")"
proxy() {  # name, seconds, then bench proxy options
  local name=$1 limit=$2; shift 2
  timeout "$limit" $py -m climb_dagster.bench proxy --device "$device" --repeats 1 "$@" \
    > "$out/$name.json" 2> "$out/$name.err"
  echo "$name rc=$? $(tr -d '\n ' < "$out/$name.json" | head -c 400)"
}
# A 60M-class proxy, compiled (the CUDA default), against transformers.Trainer on the same model and windows.
proxy proxy_60m 150 --size 60m --steps "${STEPS_60M:-60}"
# 64 demo proxies as one pack vs one at a time, eager on both sides (a compile per proxy would dominate).
proxy proxy_demo_pack64 150 --size demo --steps 48 --pack "${PACK:-64}" --compile off --no-reference
# bench e2e's proxy and transfer model as the full protocol trains them on CUDA (compile auto), and eager.
for size in e2e-proxy:48 e2e-transfer:240; do
  for c in auto off; do
    proxy "${size%%:*}_$c" 90 --size "${size%%:*}" --vocab-size 2048 --steps "${size##*:}" --compile $c --repeats 2 \
      --no-reference
  done
done
# The hand-picked sizes behind the shared figures' 917k tokens/s, to see whether the device rule does as well.
bench embed_budget_131072 --token-budget 131072 --max-batch-size 2048
rm -rf "$out/cache"
