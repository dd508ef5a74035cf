#!/usr/bin/env bash
# One prepared run of the CUDA plugin's checks on a machine with an NVIDIA
# GPU (see docs/accelerators.md). Build here, run there:
#   make gpucheck                      # builds .gpucheck/nvidia.test
#   R=<results dir> scripts/gpu-check.sh
# It only reads the GPU (never changes MIG, clocks, power or resets it),
# runs a short torch load when torch is present, and writes everything
# under $R: log.txt, smi.csv, smi.txt, crosscheck.json, test.txt,
# report.json.
set -u
R=${R:?set R to a results directory}
mkdir -p "$R"
exec > >(tee "$R/log.txt") 2>&1
cd "$(dirname "$0")/.."
echo "== machine"; uname -a; nproc; date -u
echo "== nvidia-smi"; nvidia-smi -L
nvidia-smi --query-gpu=index,uuid,name,pci.bus_id,memory.total,driver_version,mig.mode.current --format=csv > "$R/smi.csv"; cat "$R/smi.csv"
nvidia-smi > "$R/smi.txt"; head -12 "$R/smi.txt"
echo "== device nodes and libraries"
ls -l /dev/nvidia* 2>&1 | head -20; ls /dev/nvidia-caps 2>&1 | head
ldconfig -p | grep -E 'libnvidia-ml|libcuda\.' || echo "(not in the loader cache)"
ls -l /usr/local/nvidia/lib64/libnvidia-ml.so* 2>/dev/null || true
echo "== container tooling"
for c in docker nvidia-ctk nvidia-container-runtime-hook nvidia-container-cli; do printf '%s: %s\n' "$c" "$(command -v $c || echo absent)"; done
ls /etc/cdi /var/run/cdi 2>&1
echo "== test binary"; ldd .gpucheck/nvidia.test
echo "== crosscheck (pynvml, torch)"
timeout 120 python3 scripts/gpu/crosscheck.py > "$R/crosscheck.json" 2>"$R/crosscheck.err"; cat "$R/crosscheck.json"
TORCH_SMS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("torch",{}).get("sms",""))' "$R/crosscheck.json" 2>/dev/null)
TORCH_MEM=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("torch",{}).get("total_memory",""))' "$R/crosscheck.json" 2>/dev/null)
LOAD_PID=""
LOAD_JOB=""
# Memory in use before the load starts: the baseline of the load check.
IDLE_MIB=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 | tr -d ' ')
if [ -n "$TORCH_SMS" ]; then
  echo "== load: 8 GiB + bf16 matmuls"
  python3 scripts/gpu/load.py 8 16 > "$R/load.out" 2>&1 &
  LOAD_JOB=$!
  for _ in $(seq 1 100); do LOAD_PID=$(head -1 "$R/load.out" 2>/dev/null); [ -n "$LOAD_PID" ] && break; sleep 0.1; done
  sleep 4   # torch import and allocation
fi
echo "== go test"
BAI_GPU_HOST=1 BAI_GPU_REPORT="$R" BAI_GPU_LOAD_PID="$LOAD_PID" BAI_GPU_IDLE_USED_MIB="$IDLE_MIB" BAI_TORCH_SMS="$TORCH_SMS" BAI_TORCH_TOTAL_MEMORY="$TORCH_MEM" \
  timeout 180 .gpucheck/nvidia.test -test.run 'TestHostGPU' -test.v -test.timeout 170s 2>&1 | tee "$R/test.txt"
# Only the load job: a bare wait would also wait for the tee above.
[ -n "$LOAD_JOB" ] && wait "$LOAD_JOB"
if command -v nvidia-ctk >/dev/null; then nvidia-ctk cdi generate --output="$R/nvidia-cdi.yaml" >/dev/null 2>&1 && echo "CDI spec generated"; fi
echo "== done"
