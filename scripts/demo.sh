#!/usr/bin/env bash
# The end-to-end demo: synthetic ROCO + VQA-RAD in their real formats, a tokenizer learnt
# from them, then 2-rank MR-Pretrain -> TD-Calib -> GM-Coord fine-tuning -> evaluation at
# the tiny preset, and the loss plots. Usage: scripts/demo.sh [BINARY] [DIR]
set -euo pipefail
BIN=${1:-.build/release/umd-mpirun}
DIR=${2:-demo-out}
RANKS=${RANKS:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
MPIRUN="mpirun -np $RANKS --oversubscribe"
start=$(date +%s)
rm -rf "$DIR" && mkdir -p "$DIR"
echo "== 1. synthetic data (real ROCO and VQA-RAD formats)"
$BIN synth --kind roco --out "$DIR/roco" --count 600 --seed 1 --image-size 64
$BIN synth --kind vqa-rad --out "$DIR/vqa-rad" --count 800 --seed 2 --image-size 64
echo "== 2. tokenizer"
$BIN tokenizer train --roco "$DIR/roco" --vqa-rad "$DIR/vqa-rad" --vocab-size 1000 --out "$DIR/tokenizer"
common="--preset tiny --tokenizer $DIR/tokenizer --log-every 50"
echo "== 3. MR-Pretrain on ROCO, $RANKS ranks"
$MPIRUN $BIN pretrain --roco "$DIR/roco" $common --out "$DIR/pretrain" --steps 300 --batch-size 32 --lr 5e-4
echo "== 4. TD-Calib on VQA-RAD"
$MPIRUN $BIN calib --task vqa-rad --data "$DIR/vqa-rad" $common --init "$DIR/pretrain/final.safetensors" \
    --out "$DIR/calib" --steps 100 --batch-size 32 --lr 2e-4
echo "== 5. GM-Coord fine-tuning on VQA-RAD"
$MPIRUN $BIN finetune --task vqa-rad --data "$DIR/vqa-rad" $common --init "$DIR/calib/final.safetensors" \
    --out "$DIR/finetune" --steps 600 --batch-size 32 --lr 3e-4 --dropout 0
echo "== 6. evaluation on the test split (accuracy next to the majority-answer baseline)"
$MPIRUN $BIN eval --task vqa-rad --data "$DIR/vqa-rad" --weights "$DIR/finetune/final.safetensors" \
    --tokenizer "$DIR/tokenizer" --preset tiny
for stage in pretrain calib finetune; do $BIN plot "$DIR/$stage" --out "$DIR/$stage-losses.png"; done
echo "== demo done in $(( $(date +%s) - start )) s; plots: $DIR/{pretrain,calib,finetune}-losses.png"
