#!/usr/bin/env bash
# Run the three side-by-side benchmarks on one CUDA GPU, sized to finish in about six
# minutes on a data-centre GPU (an estimate: this script has not run on a GPU yet).
# Run it from the repository root; it writes benchmarks/results/gpu_*.json, the gpu_
# blocks of benchmarks/README.md, and copies both into $OUT when that is set.
set -euo pipefail

PYTHON=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
uptime

# bfloat16 autocast for every contender, as a GPU user would train.
"$PYTHON" benchmarks/train_throughput.py --device cuda --precision bfloat16 \
    --rows 240 --batch-size 8 --max-length 1024 --warmup-steps 5 --steps 20 --repeats 2 \
    --result-name gpu_train_throughput --write-readme

"$PYTHON" benchmarks/mfu.py --device cuda --matmul-size 8192 \
    --rows 240 --batch-size 8 --max-length 1024 --warmup-steps 5 --steps 20 --repeats 2 \
    --result-name gpu_mfu --write-readme

"$PYTHON" benchmarks/generation_speed.py --device cuda --precision bfloat16 \
    --prompts 8 --samples 4 --batch-size 32 --max-new-tokens 64 --repeats 2 \
    --result-name gpu_generation_speed --write-readme

if [[ -n "${OUT:-}" ]]; then
    cp benchmarks/results/gpu_*.json benchmarks/README.md "$OUT"/
fi
