#!/usr/bin/env bash
# The GPU numbers in the README: one accelerator, pes_rl installed, results into $1.
#
#     bash benchmarks/gpu_suite.sh results_dir
#
# Each step has its own time limit, so one slow step cannot take the others' time; every
# step's output is kept in the results folder as it runs.
set -uo pipefail
out=${1:?usage: gpu_suite.sh RESULTS_DIR}
mkdir -p "$out"
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1 MUJOCO_GL=egl

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import jax, brax; print('jax', jax.__version__, jax.devices(), 'brax', brax.__version__)" \
    | tee -a "$out/gpu.txt"

# 1. The GPU-sized experiment as a user runs it (1024 particles, K = 100, T = 1000).
# Stopped by Ctrl-C after 170 s if it has not finished: it saves a checkpoint and says so.
run=$(mktemp -d)
# (python -m pes_rl.cli from here: in the repo root, its pes_rl/ folder would shadow the install)
timeout -s INT 170 python3 -m pes_rl.cli train experiment=brax_halfcheetah_pes "run_dir=$run" \
    2>&1 | tail -20 | tee "$out/train.txt"
cp "$run/metrics.jsonl" "$out/halfcheetah_pes_metrics.jsonl"

# 2. Engine vs raw stepping on a Brax env, compile time apart.
timeout 140 python3 engine_grid.py --env brax/halfcheetah --particles 256 1024 4096 \
    --unroll-lengths 100 --estimators pes --calls 1 --json "$out/engine_grid_gpu.json" \
    2>&1 | tee "$out/engine_grid.txt"

# 3. Training loop, Brax's ES trainer and evosax on the same env and population.
timeout 235 python3 side_by_side.py --env halfcheetah --num-particles 1024 \
    --unroll-length 100 --horizon 1000 --seconds 20 \
    --json "$out/side_by_side_gpu.json" 2>&1 | tee "$out/side_by_side.txt"
