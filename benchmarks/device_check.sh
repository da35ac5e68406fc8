#!/usr/bin/env bash
# The whole GPU check in one command, for a GPU machine without network (docs/performance.md).
#
#   bash benchmarks/device_check.sh OUT_DIR            # on the GPU machine, from the repository root
#   bash benchmarks/device_check.sh --dry-run OUT_DIR  # the same steps at tiny sizes on the CPU (CI)
#
# The output folder is $OUT when that variable is set (the device tool sets it), else OUT_DIR. The packages the GPU machine lacks travel as
# wheels in .whl/ (bash benchmarks/fetch_wheels.sh, run where pip has an index). Steps, each under its
# own time limit so that one failure or hang costs only its share and the rest still run:
#   install (.whl/ and the project, no network) -> CUDA tests -> CPU-vs-CUDA and host-sync checks ->
#   step times (fp32, TF32, bf16; Pyro vs plain torch) -> sampling and data-loading throughput ->
#   reference-size training until the budget's end (SIGINT: checkpoint), a resume -> evaluation ->
#   fp16 weights split into files of at most 15 MiB.
# What comes back (at most 8 files of at most 16 MiB): report.md (every table, step by step),
# device_check.log (all output), metrics.jsonl, evaluation.json, samples.png, weights.pt.part-NN.
# Join the weights with `cat weights.pt.part-* > checkpoints/NAME.pt`.
set -uo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
DEST=${OUT:-${1:-}}
if [[ -z "$DEST" ]]; then
    echo "error: no output folder: give one (device_check.sh [--dry-run] OUT_DIR) or set OUT" >&2
    exit 2
fi
BUDGET=${DEVICE_CHECK_SECONDS:-530}  # the whole command; the device tool allows 600 s a call
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
WORK=$(mktemp -d)
REPORT=$DEST/report.md
LOG=$DEST/device_check.log
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
: >"$LOG"

if ((DRY)); then
    DEVICE=cpu; PRESET=tiny; BATCH=4; VIDEOS=2; SAMPLES=2; HORIZON=3; PART=256k
    STEP_ARGS=(--presets tiny --repeats 2 --warmup 1)
    SAMPLING_ARGS=(--videos 2 --samples 2 --horizon 3 --repeats 1)
    LOADER_ARGS=(--batch-size 4 --frames 8 --step-ms 1 --workers 0 1 --steps 8)
    RESERVE=30    # seconds kept for what follows the training
else
    DEVICE=cuda; PRESET=smmnist; BATCH=100; VIDEOS=64; SAMPLES=20; HORIZON=""; PART=15m
    STEP_ARGS=(--presets smmnist --repeats 10 --warmup 3)
    SAMPLING_ARGS=(--videos 100 --samples 20 --horizon 25 --repeats 2)  # 2,000 futures at once
    LOADER_ARGS=(--batch-size 100 --frames 15 --step-ms 60 --workers 0 2 4 8 --steps 40)
    RESERVE=100
fi

left() { echo $((BUDGET - SECONDS)); }

# step NAME LIMIT_SECONDS COMMAND...: run it under a time limit, its output to the log and the
# report, and a status line either way; returns the command's status.
step() {
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    {
        echo; echo "## $name"; echo; echo '```'; echo "\$ $*"
    } >>"$REPORT"
    echo "=== $name: $*" >>"$LOG"
    timeout --signal=INT --kill-after=20 "$limit" "$@" >"$WORK/step.out" 2>&1
    local rc=$?
    cat "$WORK/step.out" >>"$LOG"
    # tables and summaries go to the report; progress and warnings stay in the log
    grep -E '^\||^(device|wrote|resumed|stopped|step|PASSED|FAILED|SKIPPED|ERROR|[0-9]+ (passed|skipped|failed))|passed|skipped|failed' \
        "$WORK/step.out" | grep -v '^=* *$' | tail -n 60 >>"$REPORT"
    {
        echo '```'
        echo "$name: exit $rc after $((SECONDS - start)) s (limit $limit s)"
    } >>"$REPORT"
    echo "[$((SECONDS)) s] $name: exit $rc" | tee -a "$LOG"
    return $rc
}

{
    echo "# Device check $(date -u +%Y-%m-%dT%H:%MZ)$( ((DRY)) && echo ' (dry run, CPU, tiny sizes)')"
    echo
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo
    echo '```'
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA', torch.version.cuda, '| GPU:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
    echo '```'
} >"$REPORT" 2>&1

# --no-index: nothing is fetched; --no-build-isolation: the project builds with the machine's
# setuptools, replaced by .whl/'s only where it is older than pyproject.toml needs (77)
install_offline() {
    set -e
    ls .whl/*.whl >/dev/null
    if ! $PY -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)'; then
        $PY -m pip install -q --no-index --no-deps .whl/setuptools-*.whl
    fi
    $PY -m pip install -q --no-index --no-deps $(ls .whl/*.whl | grep -v /setuptools-)
    $PY -m pip install -q --no-index --no-deps --no-build-isolation -e .
}
export -f install_offline
export PY
if ((!DRY)); then
    step "install" 120 bash -c install_offline || {
        echo "install failed: see device_check.log" | tee -a "$REPORT"; exit 1; }
fi
$PY -c "import pyro, svg_pyro" || { echo "error: svg_pyro or pyro cannot be imported" | tee -a "$REPORT"; exit 1; }

# pytest collects only the CUDA tests' file: the others import packages a GPU image may lack
step "CUDA tests (pytest -m cuda)" 180 $PY -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider
step "host syncs and GPU busy time" 90 $PY benchmarks/profile_step.py --preset "$PRESET" --device "$DEVICE" \
    --batch-size "$BATCH"
step "training step, fp32 (TF32 off)" 120 $PY benchmarks/train_step.py "${STEP_ARGS[@]}" --device "$DEVICE"
if ((!DRY)); then
    step "training step, TF32 and cuDNN benchmark" 100 $PY benchmarks/train_step.py "${STEP_ARGS[@]}" \
        --device "$DEVICE" --tf32 --cudnn-benchmark
    step "training step, bf16 autocast" 100 $PY benchmarks/train_step.py --presets smmnist:precision=bf16 \
        --repeats 10 --warmup 3 --device "$DEVICE"
fi
step "sampling throughput" 60 $PY benchmarks/sampling.py --preset "$PRESET" --device "$DEVICE" "${SAMPLING_ARGS[@]}"
step "data wait with loader workers" 60 $PY benchmarks/data_loading.py "${LOADER_ARGS[@]}"

# Training: whatever the budget leaves; SIGINT at the limit makes the loop checkpoint and stop.
RUN=$WORK/run
TRAIN=(svi_train.py --preset "$PRESET" --device "$DEVICE" --out "$RUN" --no-progress)
if ((DRY)); then STEPS=12; TRAIN+=(--checkpoint-every 6); else STEPS=180000; TRAIN+=(--checkpoint-every 500 --sample-every 1000); fi
limit=$(($(left) - RESERVE))
if ((limit < 20)); then limit=20; fi
step "training, --preset $PRESET ($limit s)" "$limit" $PY "${TRAIN[@]}" --steps "$STEPS"
(($? == 130)) && echo "(exit 130: stopped by SIGINT at its time limit, as planned, after a checkpoint)" >>"$REPORT"
# the step reached, the median time of a step and what the reference's 180k steps would take
summary=$($PY -c 'import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
pairs = zip([{"step": 0}] + rows, rows)  # "seconds": training time since the previous row
per_step = statistics.median(b["seconds"] / (b["step"] - a["step"]) for a, b in pairs)
print(rows[-1]["step"], f"{per_step:.4f}", f"{per_step * 180_000 / 3600:.1f}")' "$RUN/metrics.jsonl" 2>>"$LOG") \
    || summary="0 nan nan"
read -r last per_step hours <<<"$summary"
echo "trained to step $last; median $per_step s per step (probe and checkpoints aside); 180,000 steps: ~$hours hours" \
    | tee -a "$REPORT"
if ((last > 0)); then
    # the run resumes from its checkpoint for a few more steps
    step "resume" 60 $PY "${TRAIN[@]}" --steps $((last + 20)) --resume
    step "evaluation ($VIDEOS videos x $SAMPLES samples)" 90 $PY -m svg_pyro evaluate \
        --checkpoint "$RUN/checkpoint.pt" --videos "$VIDEOS" --samples "$SAMPLES" --device "$DEVICE" \
        --out "$WORK/evaluate" --no-progress ${HORIZON:+--horizon "$HORIZON"}
    step "export fp16 weights" 60 $PY -m svg_pyro export "$RUN/checkpoint.pt" "$WORK/weights.pt" --half
    split -b "$PART" -d "$WORK/weights.pt" "$DEST/weights.pt.part-"
    cp "$RUN/metrics.jsonl" "$DEST/metrics.jsonl"
    cp "$WORK/evaluate/metrics.json" "$DEST/evaluation.json" 2>/dev/null
    cp "$WORK/evaluate/samples.png" "$DEST/samples.png" 2>/dev/null
fi
echo "done in $SECONDS s" | tee -a "$REPORT"
rm -rf "$WORK"
