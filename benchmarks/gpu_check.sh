#!/usr/bin/env bash
# The prepared GPU check: one call on a machine with CUDA, at most ~8 minutes, one table at the
# end. Runs the CUDA-marked tests, time to quality of `not` and `otm` on CUDA (2 training
# minutes each, quick preset), throughput in samples/s (fp32 vs bf16), and a two-process DDP
# smoke run when two GPUs exist. Each part's output also lands in $OUT (or ./gpu_check).
#
#     bash benchmarks/gpu_check.sh            # from the repository root
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check}"
mkdir -p "$OUT"
export OTZOO_CACHE="$OUT/cache"
PY=.venv/bin/python
if [ ! -x "$PY" ]; then make install >"$OUT/install.log" 2>&1 || { echo "install failed"; tail "$OUT/install.log"; exit 1; }; fi
declare -A RESULT

step() {  # name, seconds cap, command...
    local name=$1 cap=$2
    shift 2
    local t0=$SECONDS
    timeout "$cap" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    RESULT[$name]="rc=$rc, $((SECONDS - t0)) s"
}

$PY - <<'EOF' | tee "$OUT/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    print(" ", i, torch.cuda.get_device_name(i))
EOF

step cuda_tests 120 $PY -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider
step ttq_not 170 $PY benchmarks/time_to_quality.py --solvers not --device cuda \
    --budget-min 2 --eval-every-s 20 --keep-going
step ttq_otm 170 $PY benchmarks/time_to_quality.py --solvers otm --device cuda \
    --budget-min 2 --eval-every-s 20 --keep-going
step throughput 60 $PY benchmarks/throughput.py --device cuda --solvers not,otm,amortized \
    --modes "fp32 eager,bf16 autocast" --batch 128 --steps 5
if [ "$($PY -c 'import torch; print(torch.cuda.device_count())')" -ge 2 ]; then
    step ddp 60 .venv/bin/torchrun --standalone --nproc-per-node 2 -m otzoo train --solver not \
        --pair 3-5 --preset tiny --device cuda --quiet --out "$OUT/ddp"
else
    RESULT[ddp]="skipped: one GPU"
fi

echo
echo "| part | result | key lines |"
echo "|---|---|---|"
for name in cuda_tests ttq_not ttq_otm throughput ddp; do
    key=""
    case $name in
        cuda_tests) key=$(tail -1 "$OUT/$name.log" 2>/dev/null) ;;
        ttq_*) key=$(grep -E "^\| (not|otm) \|" "$OUT/$name.log" 2>/dev/null | tail -1) ;;
        throughput) key=$(grep -E "^\| (not|otm|amortized) \|" "$OUT/$name.log" 2>/dev/null | tr '\n' ' ') ;;
        ddp) key=$(tail -1 "$OUT/$name.log" 2>/dev/null) ;;
    esac
    echo "| $name | ${RESULT[$name]:-not run} | ${key//|/\/} |"
done
