#!/usr/bin/env bash
# Runs the long chaos soak (test/chaos, issue 25) for DURATION of faults:
#   scripts/chaos.sh 30m            # the issue's length
#   BAI_CHAOS_SEED=7 scripts/chaos.sh 1h
# The end-of-run table goes to $BAI_CHAOS_REPORT (default
# chaos-report.md in the current folder) and into the test log.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 DURATION (a Go duration: 30m, 1h)" >&2
  exit 2
fi
dur=$1
report=${BAI_CHAOS_REPORT:-$PWD/chaos-report.md}
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
# The runner's web terminal assets are embedded at compile time.
go run ./tools/xtermbundle internal/krunner/webassets
# The go test timeout: the faults, plus start-up, settling and clean-up.
secs=$(python3 -c 'import re,sys
m=re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", sys.argv[1])
if not m or not any(m.groups()): sys.exit("bad duration: "+sys.argv[1]+" (use e.g. 30m, 1h, 90s)")
h,mi,s=(int(x or 0) for x in m.groups()); print(h*3600+mi*60+s)' "$dur")
timeout=$(( secs + 1200 ))s
echo "chaos soak: $dur of faults (go test timeout $timeout), report -> $report"
BAI_CHAOS_DURATION=$dur BAI_CHAOS_REPORT=$report BAI_TEST_FORBID_EPHEMERAL_PORTS=1 \
  go test -count=1 -v -timeout "$timeout" -run '^TestChaosSoak_Integration$' ./test/chaos/
