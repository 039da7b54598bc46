#!/usr/bin/env bash
# Issue 11's GPU checks in one short run (about 10 min on one H100): the exact runtime switches bit for bit on the
# GPU, whole-chain precision of every switch incl. TF32, and throughput of every path incl. torch.compile.
# Writes results/tables/{precision,throughput}_gpu.{md,json} beside the CPU tables.
#     PYTHON=.venv/bin/python benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
EBM_TEST_DEVICE=cuda "$PY" -m pytest tests/test_fast_path.py -x -q -k "exact_switches or deferred_reads"
"$PY" benchmarks/precision.py --device cuda --threads 8 --paper-nets icd igebm_uncond igebm_cond --paper-batch 64 \
    --out results/tables/precision_gpu.md
"$PY" benchmarks/throughput.py --device cuda --threads 8 --batch 128 --igebm-batch 128 --steps 5 --rounds 5 \
    --train-batch 128 --train-steps 40 --compile --out results/tables/throughput_gpu.md
