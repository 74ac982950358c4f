#!/usr/bin/env bash
# The GPU checks of issues 6 and 7, prepared to run on a lent device machine, where a session
# has 15 minutes of device time and one call at most 10 (README "The GPU checks").
#
#   bash experiments/gpu_checks.sh scoring   # ~5 min: scoring throughput, CUDA tests, memory
#   bash experiments/gpu_checks.sh live      # ~6 min: the live search at full size
#
# Run `scoring` first (issue 6), then `live` at once while the machine is warm (it goes back
# 30 s after a call), if at least 8 minutes of device time are left.
# Before the call, on the development machine: `cp -r ../shared/data shared/` (shared/ travels
# with the checkout, git ignores it) and deap as a wheel in .whl/ (see the README; the searches
# import it);
# then call the device tool with this command, carry [".whl"] and timeout_s 600 (scoring: its
# limits add up to 590 s) or 520 (live). There the repository is not installed: the script puts
# it on PYTHONPATH.
# Every command has its own time limit, so a slow one costs only its own result; what a
# command finished is in $OUT (or experiments/out/gpu when OUT is unset): 7 files, of the 8 at
# most that come back.
set -uo pipefail

part=${1:?usage: gpu_checks.sh scoring|live}
out=${OUT:-experiments/out/gpu}
mkdir -p "$out"
data=${DATA:-shared/data}
[ -d "$data" ] || data=../shared/data
[ -d "$data/ptb" ] || { echo "error: no reference data at $data (copy ../shared/data to shared/)"; exit 2; }
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ! python3 -c "import deap" 2>/dev/null && ls .whl/deap-*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/deap-*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
log=$out/$part.log

step() {  # step LIMIT_SECONDS NAME COMMAND...: run one check, log its output and its outcome
  local limit=$1 name=$2
  shift 2
  local start=$SECONDS
  echo "=== $name: $*" | tee -a "$log"
  timeout "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$log"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0))"
  nproc
} >>"$log" 2>&1

device=${DEVICE:-cuda}  # DEVICE=cpu: a dry run of the plumbing here
bench=(python3 experiments/bench_scoring.py --space rnn --device "$device"
  --corpus "$data/ptb" --logs "$data/nasbench_nlp_wt2/logs.zip")
graphs=()  # CUDA graphs exist on CUDA only; the CPU dry run leaves them out
[ "$device" = cpu ] || graphs=(--cuda-graphs)
case $part in
scoring)
  # Issue 6's goals: hidden_cov at the default sizes (>= 100/s), in fast mode (>= 1,000/s), the
  # whole suite (>= 20/s); one at a time, in batches on CUDA streams, with each step recorded
  # once as a CUDA graph and replayed (one at a time and in batches), and in worker processes
  # (which then use the graphs too).
  step 150 default "${bench[@]}" --metric hidden_cov --n 40 --batch 8 --cell-batch 20 \
    "${graphs[@]}" --workers 4 --threads 2 --json "$out/bench_default.json"
  step 100 fast "${bench[@]}" --metric hidden_cov --n 100 --fast --batch 16 --cell-batch 50 \
    "${graphs[@]}" --workers 8 --threads 1 --json "$out/bench_fast.json"
  step 65 suite_fast "${bench[@]}" --metric all --n 40 --fast --batch 8 \
    --json "$out/bench_suite_fast.json"
  step 45 suite_default "${bench[@]}" --metric all --n 10 --json "$out/bench_suite_default.json"
  # The product end to end: a search (evolution, PTB) on the GPU, in-process, in batches on
  # CUDA streams (--worker-batch), at the fast and at the default sizes.
  search=(python3 -m nas_engine.search --space rnn --fitness hidden_cov --device "$device"
    --corpus "$data/ptb" --no-progress)
  rm -rf /tmp/s_fast /tmp/s_fast_graphs /tmp/s_fast_cells /tmp/s_default  # a rerun starts afresh
  step 25 search_fast "${search[@]}" --fast --budget 1000 --worker-batch 16 --out /tmp/s_fast
  if [ ${#graphs[@]} -gt 0 ]; then  # the same search with the steps replayed as CUDA graphs
    step 25 search_fast_graphs "${search[@]}" --fast --budget 1000 --worker-batch 16 \
      --cuda-graphs --out /tmp/s_fast_graphs
  fi
  # Each batch's 16 first layers run as one CellBatch (with graphs: one replay a step).
  step 30 search_fast_cells "${search[@]}" --fast --budget 1000 --worker-batch 16 --cell-batch \
    "${graphs[@]}" --out /tmp/s_fast_cells
  step 40 search_default "${search[@]}" --budget 300 --worker-batch 8 --out /tmp/s_default
  # One file for the searches' summaries: at most 8 files come back from the device.
  python3 -c 'import json, pathlib; print(json.dumps({p.parent.name: json.loads(p.read_text()) for p in sorted(pathlib.Path("/tmp").glob("s_*/summary.json"))}, indent=1))' \
    >"$out/search_summaries.json"
  # The CUDA tests that CI skips.
  [ -e ../shared ] || ln -s "$PWD/shared" ../shared 2>/dev/null
  step 70 cuda_tests python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
    tests/test_metric_suite_cuda.py tests/test_batched.py tests/test_step_graphs.py \
    tests/test_cell_batch.py tests/test_host_syncs.py -k cuda
  step 40 memory python3 experiments/bench_memory.py --n 300 --device "$device" \
    --corpus "$data/ptb" --json "$out/bench_memory_cuda.json"
  ;;
live)
  # Issue 7's full-size live search, its budget cut to fit one call: 30 s of search per method,
  # the top 3 trained 100 steps. A full-size training step is about 12,000 torch operations
  # (measured on the CPU), so on a GPU, bound by launches, about 0.1 s: 17 trainings of 100
  # steps and their evaluations take about 4 minutes, the four searches 120 s. The report is
  # rewritten after every method.
  step 480 live python3 experiments/live_search.py --device "$device" --embedding-size 400 \
    --hidden-size 600 --time-budget 30 --top 3 --confirm-steps 100 --corpus "$data/ptb" \
    --out "$out/live_search"
  ;;
*)
  echo "error: unknown part '$part' (scoring or live)"
  exit 2
  ;;
esac
