#!/usr/bin/env bash
# Fill .gpu/tokenizer (ignored by git) with SmolLM2's tokenizer files and config.json, copied from pixiu's converted
# embedded model, for bench/gpu.py on a machine that gets only the repository (carry .gpu/tokenizer there):
#     bench/gpu_prepare.sh && python bench/gpu.py --tokenizer .gpu/tokenizer --out bench/results/gpu.md
# The weights (model.safetensors, ~540 MB) stay behind: the bench builds random weights of the shapes it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
src=$(PYTHONPATH=src "$PY" -c "from pixiu.model import io; print(io.resolve('smollm2-135m'))")
mkdir -p .gpu/tokenizer
for f in "$src"/*; do
  case "$f" in
    *.safetensors | *.bin) ;;
    *) cp "$f" .gpu/tokenizer/ ;;
  esac
done
du -sh .gpu/tokenizer && ls .gpu/tokenizer
