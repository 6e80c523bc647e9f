#!/usr/bin/env bash
# Bitwise evidence for a restructuring that must not change a number: runs the same
# training runs and debug-step variants with two builds and compares the tensors' bytes
# (the files' headers name the build that wrote them). Usage: scripts/compare-builds.sh OLD_BINARY NEW_BINARY [DIR]
# Compares: final weights of 2-rank pretrain, calib, GM-Coord finetune, a sharded +
# accumulated pretrain, and every debug-step variant (synthetic and real data, each task
# kind, --init-from, --at-step, --matmul onednn, and --matmul bf16 where the CPU has it).
# Exit status 1 when any output differs.
set -euo pipefail
OLD=$1 NEW=$2 DIR=${3:-/tmp/compare-builds}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
rm -rf "$DIR" && mkdir -p "$DIR/data"
D=$DIR/data
$OLD synth --kind roco --out $D/roco --count 120 --seed 1 --image-size 32 >/dev/null
$OLD synth --kind vqa-rad --out $D/vqa --count 120 --seed 2 --image-size 32 >/dev/null
$OLD synth --kind roco --out $D/rocoret --count 120 --seed 3 --image-size 32 >/dev/null
$OLD tokenizer train --roco $D/roco --vqa-rad $D/vqa --vocab-size 300 --out $D/tok >/dev/null
common="--preset tiny --tokenizer $D/tok --log-every 100 --batch-size 8"
for which in old new; do
    b=$OLD; [ $which = new ] && b=$NEW
    o=$DIR/$which; mkdir -p $o
    mpirun -np 2 --oversubscribe $b pretrain --roco $D/roco $common --steps 6 --out $o/pretrain >$o/pretrain.log 2>&1
    mpirun -np 2 --oversubscribe $b pretrain --roco $D/roco $common --steps 6 --shard-optimizer --accumulate 2 \
        --out $o/pretrain-sharded >$o/pretrain-sharded.log 2>&1
    mpirun -np 2 --oversubscribe $b calib --task vqa-rad --data $D/vqa $common --steps 4 \
        --init $o/pretrain/final.safetensors --out $o/calib >$o/calib.log 2>&1
    mpirun -np 2 --oversubscribe $b finetune --task vqa-rad --data $D/vqa $common --steps 6 \
        --init $o/calib/final.safetensors --out $o/finetune >$o/finetune.log 2>&1
    mpirun -np 2 --oversubscribe $b finetune --task vqa-rad --data $D/vqa $common --steps 4 --clip-norm 1 \
        --on-nonfinite skip-step --out $o/finetune-clip >$o/finetune-clip.log 2>&1
    ds="$b debug-step --out"
    $ds $o/d-pretrain.st >/dev/null
    $ds $o/d-pretrain-at3.st --at-step 3 --total-steps 7 --seed 5 --batch-size 6 >/dev/null
    $ds $o/d-calib.st --stage calib --task vqa >/dev/null
    $ds $o/d-ft-vqa.st --stage finetune --task vqa >/dev/null
    $ds $o/d-ft-cls.st --stage finetune --task classification --answers 7 >/dev/null
    $ds $o/d-ft-ret.st --stage finetune --task retrieval >/dev/null
    $ds $o/d-pretrain-real.st --roco $D/roco --tokenizer $D/tok --at-step 2 >/dev/null
    $ds $o/d-ft-real.st --stage finetune --dataset vqa-rad --data $D/vqa --tokenizer $D/tok >/dev/null
    $ds $o/d-ft-init.st --stage finetune --task vqa --init-from $o/pretrain/final.safetensors --init-only vision.,text. \
        --vocabulary-size 300 >/dev/null
    $ds $o/d-ft-onednn.st --stage finetune --task vqa --matmul onednn >/dev/null
    # bf16 runs only where the CPU has AVX512-BF16 or AMX (refused elsewhere: no file to compare).
    $ds $o/d-pretrain-bf16.st --matmul bf16 >/dev/null 2>&1 || true
    $ds $o/d-ft-bf16.st --stage finetune --task vqa --matmul bf16 --dropout 0.1 >/dev/null 2>&1 || true
    $ds $o/d-pretrain-lr.st --lr 3e-4 --preset small --batch-size 2 >/dev/null
done
# The tensors' bytes: a safetensors file is an 8-byte header length N, N bytes of JSON
# header (whose metadata names the build that wrote it), then the data.
data() { local n; n=$(od -An -t u8 -N 8 "$1" | tr -d ' '); tail -c +$((9 + n)) "$1"; }
status=0
for f in $(cd $DIR/old && ls *.st */final.safetensors); do
    if cmp -s <(data $DIR/old/$f) <(data $DIR/new/$f); then echo "same      $f  $(data $DIR/new/$f | sha256sum | cut -c1-16)"
    else echo "DIFFERENT $f"; status=1; fi
done
exit $status
