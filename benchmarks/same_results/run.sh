#!/bin/bash
# Short runs of every built-in strategy (the default run, lr_toy2d, influence balancing, gymnax
# and Gymnasium CartPole, the learned-optimizer hybrid, random search, a user's estimator) into
# OUT/<tag>, with the checkout REPO and the interpreter PYTHON that has REPO installed. Run it
# for main before a refactor and for the change (a separate checkout and venv each:
#   git worktree add /tmp/base main && python -m venv --system-site-packages /tmp/venv &&
#   /tmp/venv/bin/pip install --no-deps -e /tmp/base), then
#   python benchmarks/same_results/compare.py OUT_BEFORE OUT_AFTER
# Usage: benchmarks/same_results/run.sh OUT REPO PYTHON
set -euo pipefail
out=$1; repo=$2; py=$3; mkdir -p "$out"; cd "$repo"
run() { tag=$1; shift; rm -rf "$out/$tag"; "$py" train.py run_dir="$out/$tag" train.progress=false "$@" > "$out/$tag.log" 2>&1 || echo "FAIL $tag"; }
run default
run lr_toy2d_pes experiment=lr_toy2d_pes train.iterations=30
run lr_toy2d_tes experiment=lr_toy2d_tes train.iterations=30
run lr_toy2d_es experiment=lr_toy2d_es train.iterations=30
run lr_toy2d_nres experiment=lr_toy2d_nres train.iterations=30
run lr_toy2d_rs experiment=lr_toy2d_random_search train.iterations=5
run ib_pes experiment=influence_balancing_pes train.iterations=30
run ib_tes experiment=influence_balancing_tes train.iterations=30
run cp_pes experiment=gymnax_cartpole_pes_cpu train.iterations=20 train.eval_every=10
run cp_es experiment=gymnax_cartpole_es_cpu train.iterations=5 train.eval_every=5
run cp_nres experiment=gymnax_cartpole_nres_cpu train.iterations=20 train.eval_every=10
run cp_ars env=gymnax env.id=CartPole-v1 agent=ars agent.num_particles=8 agent.top_directions=2 agent.sigma=0.05 train.iterations=4 train.eval_every=2
run lopt_hybrid experiment=learned_optimizer_hybrid_cpu train.iterations=3 train.eval_every=3
run gym_pes env=gym env.id=CartPole-v1 agent=pes agent.num_particles=8 agent.unroll_length=20 train.iterations=20 train.eval_every=10
run own_estimator agent.name=examples.decaying_pes:DecayingPES train.iterations=20 train.eval_every=10
echo done
