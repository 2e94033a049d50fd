#!/usr/bin/env bash
# One command for a session that has a GPU: the CUDA tests, then the benchmarks in bf16, then a table in
# docs/performance.md (the section between the gpu_check markers; the CPU section stays). At most ~10 minutes.
#
#   benchmarks/gpu_check.sh            on a CUDA machine, from the repo root (or anywhere: it cd's there)
#   benchmarks/gpu_check.sh --cpu      dry run on the CPU (same as GPU_CHECK_DRY=1): the same steps, tiny sizes,
#                                      to prove the plumbing and the table writer
#
# Steps, each under `timeout` and within an overall budget; a failed or timed-out step is recorded, not fatal:
#   cuda_tests    pytest on the tests that use CUDA (tests/test_cuda*.py, or any marked cuda); none is fine
#   tt_<model>    benchmarks/train_throughput.py --dtype bfloat16 --device cuda on the embedded SmolLM2-135M and on
#                 random Llamas of Llama-3.2-1B's and Llama-3.1-8B's shapes (no hub needed), lengths 16/512/2048
#   greedy        benchmarks/greedy_decoding.py --quick --device cuda
#   capture       benchmarks/capture_vs_hf.py --quick --device cuda
#   report        train_throughput.py --report: the results as docs/records/gpu_check.json, rendered into
#                 docs/performance.md's gpu_check block
#
# Environment knobs: PYTHON (the interpreter; default: the first of .venv/bin/python, python3, python whose torch
# sees CUDA), GPU_CHECK_DRY=1, GPU_CHECK_MODELS (space-separated --model values), GPU_CHECK_LENGTHS (16,512,2048),
# GPU_CHECK_SKIP (step names to skip, e.g. "greedy capture"), GPU_CHECK_BUDGET (seconds for all steps; 570),
# GPU_CHECK_OUT (results folder; .cache/gpu_check/<stamp>), GPU_CHECK_ROOT (the repository whose docs get the record),
# GPU_CHECK_INSTALL=0 (never run pip; otherwise `pip install -e .` from PyPI only when a dependency is missing).
# The lent GPU machine is offline: fetch the missing wheels here first with benchmarks/gpu_wheels.sh, carry ".whl",
# and this script installs them into /tmp/site.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

DRY=${GPU_CHECK_DRY:-0}
for arg in "$@"; do
    case "$arg" in
        --cpu | --dry) DRY=1 ;;
        -h | --help)
            sed -n '2,23p' "$0"
            exit 0
            ;;
        *)
            echo "gpu_check: unknown argument $arg (use --cpu for a dry run on the CPU, --help)" >&2
            exit 2
            ;;
    esac
done

export WORKBENCH_CACHE=${WORKBENCH_CACHE:-$REPO/.cache/workbench}
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" # the workbench package imports from the checkout, installed or not
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${GPU_CHECK_OUT:-$REPO/.cache/gpu_check/$STAMP}
ROOT=${GPU_CHECK_ROOT:-$REPO}
SKIP=" ${GPU_CHECK_SKIP:-} "
mkdir -p "$OUT"
: >"$OUT/steps.tsv"

if [[ "$DRY" == 1 ]]; then
    DEVICE=cpu DTYPE=float32 BUDGET=${GPU_CHECK_BUDGET:-1800}
    MODELS=${GPU_CHECK_MODELS:-"default random:llama-3.2-1b@layers=1"}
    LENGTHS=${GPU_CHECK_LENGTHS:-16,32}
    TT_EXTRA=(--reps 1 --no-memory --threads "${OMP_NUM_THREADS:-1}")
    BENCH_EXTRA=(--reps 1 --device cpu)
    SCALE=4 # the CPU is slower: longer per-step timeouts
else
    DEVICE=cuda DTYPE=bfloat16 BUDGET=${GPU_CHECK_BUDGET:-570}
    MODELS=${GPU_CHECK_MODELS:-"default random:llama-3.2-1b random:llama-3.1-8b"}
    LENGTHS=${GPU_CHECK_LENGTHS:-16,512,2048}
    TT_EXTRA=()
    BENCH_EXTRA=(--quick --device cuda)
    SCALE=1
fi
START=$SECONDS

say() { echo "[gpu_check $((SECONDS - START))s] $*"; }

# ---------------------------------------------------------------- the interpreter
cuda_ok() { "$1" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }
has_torch() { "$1" -c 'import torch' >/dev/null 2>&1; }

PY=""
CANDIDATES=()
[[ -n "${PYTHON:-}" ]] && CANDIDATES+=("$PYTHON")
[[ -x "$REPO/.venv/bin/python" ]] && CANDIDATES+=("$REPO/.venv/bin/python")
for c in python3 python; do command -v "$c" >/dev/null 2>&1 && CANDIDATES+=("$(command -v "$c")"); done
for c in "${CANDIDATES[@]}"; do
    if [[ "$DRY" == 1 ]] && has_torch "$c"; then PY=$c && break; fi
    if [[ "$DRY" != 1 ]] && cuda_ok "$c"; then PY=$c && break; fi
done
if [[ -z "$PY" ]]; then
    echo "gpu_check: no Python here has a torch that sees a CUDA GPU (tried: ${CANDIDATES[*]:-none})." >&2
    for c in "${CANDIDATES[@]}"; do
        "$c" -c 'import sys, torch; print(" ", sys.executable, "torch", torch.__version__, "built for CUDA",
            torch.version.cuda, "cuda.is_available():", torch.cuda.is_available())' 2>/dev/null >&2 ||
            echo "  $c: no torch" >&2
    done
    echo "  Fix: nvidia-smi must list the GPU; then a venv with a CUDA torch (PyPI's Linux wheels include CUDA):" >&2
    echo "    python3 -m venv .venv && .venv/bin/pip install torch && .venv/bin/pip install -e . && $0" >&2
    echo "  (or GPU_CHECK_DRY=1 $0 to check the plumbing on the CPU)" >&2
    exit 2
fi
say "python: $PY ($("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'))"

if compgen -G "$REPO/.whl/*.whl" >/dev/null; then # carried wheels (benchmarks/gpu_wheels.sh): the GPU machine is offline
    say "installing the carried wheels in .whl/ into /tmp/site (no index, no deps)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$REPO"/.whl/*.whl >"$OUT/wheels.log" 2>&1 || say "wheel install failed (see $OUT/wheels.log); going on"
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi

if ! "$PY" -c 'import transformers, transformer_lens, peft, workbench' >/dev/null 2>&1; then
    if [[ "${GPU_CHECK_INSTALL:-1}" != 0 ]]; then
        say "a dependency is missing: pip install -e . (PyPI only; log in $OUT/install.log)"
        "$PY" -m pip install -e "$REPO" >"$OUT/install.log" 2>&1 || say "pip install failed (see $OUT/install.log); going on"
    fi
fi

"$PY" - "$OUT/env.json" "$DRY" "$DTYPE" <<'PYEOF' || say "could not record the environment"
import json, subprocess, sys, datetime
import torch
from importlib.metadata import PackageNotFoundError, version as dist_version
def version(dist):
    try:
        return dist_version(dist)
    except PackageNotFoundError:
        return "missing"
try:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    commit = ""
cuda = torch.cuda.is_available()
env = dict(
    date=datetime.datetime.now().isoformat(timespec="seconds"), commit=commit or "unknown", dry=sys.argv[2] == "1",
    dtype=sys.argv[3], torch=torch.__version__, cuda=torch.version.cuda,
    gpu=torch.cuda.get_device_name(0) if cuda else None,
    gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
    transformers=version("transformers"), transformer_lens=version("transformer-lens"), peft=version("peft"),
)
json.dump(env, open(sys.argv[1], "w"), indent=2)
print(f"gpu: {env['gpu']} ({env['gpu_memory_gib']} GiB), commit {env['commit']}")
PYEOF

# ---------------------------------------------------------------- steps
# run_step NAME TIMEOUT_S CMD...: runs CMD under timeout (cut to the budget left), logs to $OUT/NAME.log, records
# NAME, status (ok | failed | timeout | skipped | none), exit code and seconds in $OUT/steps.tsv. Never fails itself.
run_step() {
    local name=$1 limit=$(($2 * SCALE)) t0=$SECONDS rc=0 status
    shift 2
    if [[ "$SKIP" == *" $name "* ]]; then
        printf '%s\tskipped\t-\t0\n' "$name" >>"$OUT/steps.tsv"
        say "$name: skipped (GPU_CHECK_SKIP)"
        return 0
    fi
    local left=$((BUDGET - (SECONDS - START)))
    if ((left < 15)); then
        printf '%s\tskipped (budget spent)\t-\t0\n' "$name" >>"$OUT/steps.tsv"
        say "$name: skipped, the ${BUDGET}s budget is spent"
        return 0
    fi
    ((limit > left)) && limit=$left
    say "$name (timeout ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout ;;
        *) status=failed ;;
    esac
    if [[ "$name" == cuda_tests && $rc == 5 ]]; then status=none; fi # pytest: no tests collected
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$((SECONDS - t0))" >>"$OUT/steps.tsv"
    say "$name: $status (exit $rc, $((SECONDS - t0))s); $(grep -E '^SUMMARY|passed|failed|skipped' "$OUT/$name.log" | tail -n 1 || true)"
    return 0
}

CUDA_TESTS=()
for f in "$REPO"/tests/test_cuda*.py; do [[ -e "$f" ]] && CUDA_TESTS+=("$f"); done
while IFS= read -r f; do
    [[ " ${CUDA_TESTS[*]:-} " == *" $f "* ]] || CUDA_TESTS+=("$f")
done < <(grep -l 'mark\.cuda' "$REPO"/tests/test_*.py 2>/dev/null || true)
if ((${#CUDA_TESTS[@]})); then
    run_step cuda_tests 120 "$PY" -m pytest -q -p no:cacheprovider "${CUDA_TESTS[@]}"
else
    printf 'cuda_tests\tnone\t-\t0\n' >>"$OUT/steps.tsv"
    say "cuda_tests: no test uses CUDA"
fi

for model in $MODELS; do
    tag=$(echo "$model" | sed 's/^random://; s/[^A-Za-z0-9.]/-/g')
    case "$model" in
        *8b*) limit=200 ;;
        *1b*) limit=120 ;;
        *) limit=120 ;;
    esac
    run_step "tt_$tag" "$limit" "$PY" benchmarks/train_throughput.py --model "$model" --dtype "$DTYPE" \
        --device "$DEVICE" --lengths "$LENGTHS" --json "$OUT/tt_$tag.json" "${TT_EXTRA[@]}"
done

run_step greedy 90 "$PY" benchmarks/greedy_decoding.py "${BENCH_EXTRA[@]}"
run_step capture 60 "$PY" benchmarks/capture_vs_hf.py "${BENCH_EXTRA[@]}"

# ---------------------------------------------------------------- the table
rc=0
"$PY" benchmarks/train_throughput.py --report "$OUT" --root "$ROOT" >"$OUT/report.log" 2>&1 || rc=$?
if [[ $rc == 0 ]]; then
    say "wrote $ROOT/docs/records/gpu_check.json and the GPU section of $ROOT/docs/performance.md"
else
    say "the report failed (exit $rc, see $OUT/report.log)"
fi
say "steps:"
column -t -s $'\t' "$OUT/steps.tsv" 2>/dev/null || cat "$OUT/steps.tsv"
failed=$(awk -F'\t' '$2 == "failed" || $2 == "timeout"' "$OUT/steps.tsv" | wc -l)
echo "SUMMARY gpu_check: $(wc -l <"$OUT/steps.tsv") steps, $failed failed or timed out, report exit $rc; results in $OUT"
[[ $rc == 0 ]]
