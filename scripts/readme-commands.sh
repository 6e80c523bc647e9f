#!/usr/bin/env bash
# Runs the README's shell commands as they are written, at the tiny preset, in a scratch
# directory: the data it generates, the training commands, using a trained model,
# checkpoints and resume, debug-step, selftest. A README edit that breaks a command fails
# here (make test runs this after the unit tests).
#
# Usage: scripts/readme-commands.sh [BINARY] [README]
#   BINARY: the umd-mpirun to run (default .build/release/umd-mpirun, else .build/debug/…).
#     The scratch directory links .build/release/umd-mpirun to it, so the README's
#     `B=.build/release/umd-mpirun` lines run unchanged.
#
# What is not verbatim, and why (each is printed when it happens):
#   - blocks that need what a newcomer's machine lacks are skipped, naming the reason:
#     `make …` (this script runs under make test), a cluster hostfile or 16 ranks, the
#     downloaded CLIP/RoBERTa weights of the base recipe;
#   - `[--flag a|b]` is notation for an optional flag and is dropped;
#   - `…` stands for "the arguments above"; in the checkpoints block it becomes
#     DOTS_CHECKPOINTS below (a run long enough for the step-500 checkpoint it exports);
#     `--question "…"` is left as it is (a question of one character);
#   - `scan.png` is a generated VQA-RAD image, copied there first;
#   - more ranks than cores: OpenMPI is told to oversubscribe through its environment, and
#     `mpirun` as root is allowed the same way (README "Running under mpirun").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
README=${2:-$ROOT/README.md}
BIN=${1:-}
if [ -z "$BIN" ]; then
    for candidate in "$ROOT/.build/release/umd-mpirun" "$ROOT/.build/debug/umd-mpirun"; do
        [ -x "$candidate" ] && { BIN=$candidate; break; }
    done
fi
[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "readme-commands: no umd-mpirun binary (make build or make release)" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

DOTS_CHECKPOINTS="--roco data/roco --tokenizer data/tokenizer --steps 500 --batch-size 4 --log-every 250"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/umd-readme-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/.build/release"
ln -s "$BIN" "$WORK/.build/release/umd-mpirun"
[ -f "$(dirname "$BIN")/umd-build-info" ] && ln -s "$(dirname "$BIN")/umd-build-info" "$WORK/.build/release/umd-build-info"
ln -s "$ROOT/hostfiles" "$WORK/hostfiles"
cd "$WORK"

# The README's ```sh blocks, one file each (blocks/0, blocks/1, …), continuation lines joined.
mkdir "$WORK/blocks"
awk -v dir="$WORK/blocks" '
    /^```sh$/ { inside = 1; file = dir "/" n++; line = ""; next }
    /^```$/   { inside = 0; next }
    inside {
        if (sub(/\\$/, "")) { line = line $0; next }
        print line $0 > file; line = ""
    }' "$README"

# Which block is which, told by what it holds (the README's order may change).
skip_reason() {
    local text=$1
    case "$text" in
        *"make deps demo"*) echo "the newcomer's make commands (this script runs under make test)";;
        *"make bench"*) echo "benchmarks (minutes each; make bench)";;
        *"clip-vit-base-patch16"*) echo "the base recipe: needs downloaded CLIP/RoBERTa weights and 16 ranks";;
        *"hostfiles/cluster"*) echo "a cluster's hostfile";;
        *) return 1;;
    esac
}
order_key() {   # data first, then training, using the model, the rest
    case "$1" in
        *"synth --kind roco"*) echo 0;;
        *"launch -np 2 -- pretrain"*) echo 1;;
        *"predict --weights"*) echo 2;;
        *) echo 3;;
    esac
}

ran=0 skipped=0
blocks=$(for f in "$WORK"/blocks/*; do echo "$(order_key "$(cat "$f")") $f"; done | sort -k1,1n -k2,2V | cut -d' ' -f2)
B=.build/release/umd-mpirun
for f in $blocks; do
    text=$(cat "$f")
    if reason=$(skip_reason "$text"); then
        echo "== skipped README block ($(head -n 1 "$f" | cut -c1-60)…): $reason"
        skipped=$((skipped + 1))
        continue
    fi
    # Data, training and using the model share one directory (each uses the one before);
    # every other block gets its own beside it (the checkpoints block's runs/pre is another
    # run than training's), with the data, the binary and the hostfiles linked in.
    cd "$WORK"
    if [ "$(order_key "$text")" = 3 ]; then
        mkdir "block-$(basename "$f")" && cd "block-$(basename "$f")"
        ln -s ../data data && ln -s ../.build .build && ln -s ../hostfiles hostfiles
    fi
    while IFS= read -r line; do
        command=$(printf '%s' "$line" | sed -E 's/^[[:space:]]+//; s/[[:space:]]+#.*$//; s/ \[--[^]]*\]//g')
        case "$command" in ''|'#'*) continue;; esac
        case "$command" in
            *"…"*)
                case "$command" in
                    *'--question "…"'*) ;;
                    *"pretrain …"*) command=${command/…/$DOTS_CHECKPOINTS}
                                    echo "   (… = $DOTS_CHECKPOINTS)";;
                    *) echo "readme-commands: no expansion for … in: $command" >&2; exit 1;;
                esac;;
        esac
        if [[ $command == *scan.png* && ! -f scan.png ]]; then
            cp "$(find data/vqa-rad -name '*.png' -o -name '*.jpg' | sort | head -n 1)" scan.png
            echo "   (scan.png: a generated VQA-RAD image)"
        fi
        echo "\$ $command"
        started=$(date +%s)
        if ! output=$(eval "$command" 2>&1 </dev/null); then
            printf '%s\n' "$output" | tail -n 30
            echo "readme-commands: FAILED: $command (README block $(basename "$f"))" >&2
            exit 1
        fi
        [ -z "$output" ] || printf "%s\n" "$output" | tail -n 3 | sed "s/^/   | /"
        echo "   ($(( $(date +%s) - started )) s)"
        ran=$((ran + 1))
    done < "$f"
done

# What the commands say they write.
cd "$WORK"
for made in ft.png preds.jsonl report.html models/vqa-rad-tiny/config.json models/vqa-rad-tiny/model.safetensors \
            data/vqa-rad-osf runs/pre/final.safetensors block-*/step.safetensors block-*/ft.safetensors \
            block-*/pre.safetensors; do
    [ -e "$made" ] || { echo "readme-commands: $made was not written" >&2; exit 1; }
done
[ "$(wc -l < preds.jsonl)" -gt 0 ] || { echo "readme-commands: preds.jsonl is empty" >&2; exit 1; }
echo "readme-commands: $ran README commands ran as written, $skipped block(s) skipped (reasons above)"
