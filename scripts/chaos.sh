#!/usr/bin/env bash
# Checks a machine or cluster the way a week-long job would meet it: N times, a 2-rank tiny
# pretraining run with a checkpoint after every step is started, one rank is SIGKILLed at a
# random moment (mid-step, mid-checkpoint, …), and --resume is run until the job finishes.
# Every resumed run must end with the same final weights (sha256) as an uninterrupted one.
# With --kill-launcher, mpirun itself is SIGKILLed instead: every rank must notice within 30 s
# that its launcher is gone and stop without saving, and the run must resume bitwise.
# Usage: scripts/chaos.sh [--kill-launcher] [N=20] [BINARY=.build/release/umd-mpirun] [DIR=chaos-out]
set -uo pipefail
TARGET=rank
if [ "${1:-}" = "--kill-launcher" ]; then TARGET=launcher; shift; fi
N=${1:-20}
BIN=$(realpath "${2:-.build/release/umd-mpirun}")
DIR=${3:-chaos-out}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
MPIRUN="mpirun -np 2 --oversubscribe"
STEPS=40
rm -rf "$DIR" && mkdir -p "$DIR"
"$BIN" synth --kind roco --out "$DIR/roco" --count 64 --image-size 32 > /dev/null || exit 1
"$BIN" tokenizer train --roco "$DIR/roco" --vocab-size 300 --out "$DIR/tok" > /dev/null || exit 1
args() { echo "pretrain --roco $DIR/roco --tokenizer $DIR/tok --out $1 --steps $STEPS --batch-size 8 --checkpoint-every 1 --stall-timeout 60"; }

start=$(date +%s%N)
$MPIRUN "$BIN" $(args "$DIR/straight") > "$DIR/straight.log" 2>&1 || { echo "chaos: the uninterrupted run failed"; exit 1; }
seconds=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
want=$(sha256sum "$DIR/straight/final.safetensors" | cut -d' ' -f1)
echo "chaos: uninterrupted run $seconds s, final weights sha256 ${want:0:16}…"

failures=0
for i in $(seq 1 "$N"); do
    out="$DIR/run-$i"
    $MPIRUN "$BIN" $(args "$out") > "$out.log" 2>&1 &
    job=$!
    delay=$(awk -v s="$seconds" -v r="$RANDOM" 'BEGIN { printf "%.2f", 0.3 + (s - 0.3) * r / 32768 }')
    sleep "$delay"
    orphans=""
    if [ "$TARGET" = launcher ]; then
        victim=$job
        kill -9 "$victim" 2> /dev/null
        wait "$job" 2> /dev/null
        # The ranks must be gone within 30 s (they check their parent every second).
        for _ in $(seq 1 60); do
            pgrep -f "umd-mpirun pretrain .*--out $out " > /dev/null || break
            sleep 0.5
        done
        orphans=$(pgrep -f "umd-mpirun pretrain .*--out $out " | tr '\n' ' ')
        if [ -n "$orphans" ]; then kill -9 $orphans 2> /dev/null; sleep 1; fi
    else
        victim=$(pgrep -f "umd-mpirun pretrain .*--out $out " | shuf -n 1)
        if [ -n "$victim" ]; then kill -9 "$victim"; fi
        wait "$job" 2> /dev/null
    fi
    # Resume until done (a kill before the first checkpoint leaves nothing to resume).
    resumed=""
    for attempt in 1 2 3; do
        if [ -d "$out/checkpoints" ] && ls "$out"/checkpoints/step-*/manifest.json > /dev/null 2>&1; then
            $MPIRUN "$BIN" $(args "$out") --resume >> "$out.log" 2>&1 && { resumed=$(grep -o "resumed from [^ ]*" "$out.log" | tail -1); break; }
        else
            $MPIRUN "$BIN" $(args "$out") >> "$out.log" 2>&1 && { resumed="restarted (no checkpoint yet)"; break; }
        fi
    done
    got=$(sha256sum "$out/final.safetensors" 2> /dev/null | cut -d' ' -f1)
    if [ -n "$orphans" ]; then
        echo "chaos: kill $i at ${delay}s (launcher pid $victim): ranks $orphans were still alive 30 s later (log: $out.log)"
        failures=$((failures + 1))
    elif [ "$got" = "$want" ]; then
        echo "chaos: kill $i of the $TARGET at ${delay}s (pid ${victim:-none}): ${resumed:-not resumed}: identical"
        rm -rf "$out" "$out.log"
    else
        echo "chaos: kill $i at ${delay}s (pid ${victim:-none}): ${resumed:-not resumed}: DIFFERENT final weights (log: $out.log)"
        failures=$((failures + 1))
    fi
done
echo "chaos: $((N - failures)) of $N kills ended with bitwise-identical final weights"
[ "$failures" -eq 0 ]
