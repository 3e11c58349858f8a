#!/usr/bin/env bash
# The default tier, RUNS times in a row (default 10), while two other CPU-bound processes keep the cores busy:
# the suite's verdict must not depend on how busy the machine is, nor on test order (pytest-randomly draws a
# new order each run; its seed is printed). Prints one line per run and a summary; exit 1 if any run failed.
#   bash ci/load_loop.sh            RUNS=3 bash ci/load_loop.sh
#   HOGS=0 bash ci/load_loop.sh     no busy loops of its own: when other CPU-bound work already runs beside it
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-10}"
bash ci/setup.sh >/dev/null || exit 1
mkdir -p runs
log="runs/load_loop.log"
: > "$log"
hogs=()
for _ in $(seq 1 "${HOGS:-2}"); do
    python3 -c "while True: pass" &
    hogs+=($!)
done
trap '[ ${#hogs[@]} -eq 0 ] || kill "${hogs[@]}" 2>/dev/null' EXIT
echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); ${#hogs[@]} busy loops of" \
     "its own; load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
green=0
for i in $(seq 1 "$RUNS"); do
    start=$(date +%s)
    seed=$(( RANDOM * 32768 + RANDOM ))  # pytest-randomly's order; --randomly-seed=N repeats it
    bash ci/test.sh -q -p no:cacheprovider --randomly-seed="$seed" > "runs/load_loop_run.txt" 2>&1
    rc=$?
    seconds=$(( $(date +%s) - start ))
    seed="randomly-seed=$seed"
    summary=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed)' runs/load_loop_run.txt | tail -1)
    verdict=$([ "$rc" -eq 0 ] && echo green || echo RED)
    [ "$rc" -eq 0 ] && green=$((green + 1))
    echo "run $i: $verdict in ${seconds}s ($seed) $summary; load average $(cut -d' ' -f1-3 /proc/loadavg)" \
        | tee -a "$log"
    if [ "$rc" -ne 0 ]; then
        cp runs/load_loop_run.txt "runs/load_loop_failed_$i.txt"
        grep -E '^(FAILED|ERROR)' runs/load_loop_run.txt | tee -a "$log"
    fi
done
echo "$green/$RUNS runs green under load" | tee -a "$log"
[ "$green" -eq "$RUNS" ]
