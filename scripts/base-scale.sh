#!/usr/bin/env bash
# The base preset end to end on 2 ranks from converted full-size weights, on synthetic data:
# convert -> pretrain 1 step -> checkpoint -> resume to step 2 -> export (compared bit for bit
# with final.safetensors) -> TD-Calib at 384 px -> GM-Coord fine-tuning -> eval.
# Usage: scripts/base-scale.sh HF_DIR [BINARY] [OUT]
#   HF_DIR holds clip/model.safetensors, roberta/model.safetensors (+ config.json each) and
#   tokenizer/{vocab.json,merges.txt}: the real openai/clip-vit-base-patch16 and roberta-base
#   files, or random ones of the same shapes (scripts/fixtures/make_base_hf_weights.py).
# Needs ~22 GB of memory for 2 ranks; each stage prints its step time and peak memory per rank.
set -euo pipefail
HF=${1:?usage: scripts/base-scale.sh HF_DIR [BINARY] [OUT]}
BIN=${2:-.build/release/umd-mpirun}
OUT=${3:-base-scale-out}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
MPIRUN="mpirun -np 2 --oversubscribe"
rm -rf "$OUT" && mkdir -p "$OUT"
common="--tokenizer $HF/tokenizer --log-every 1 --stall-timeout 1800"
$BIN synth --kind roco --out "$OUT/roco" --count 24 --image-size 64 > /dev/null
$BIN synth --kind vqa-rad --out "$OUT/vqa" --count 40 --image-size 64 > /dev/null
echo "== convert"
$BIN convert --preset base --clip "$HF/clip/model.safetensors" --roberta "$HF/roberta/model.safetensors" \
    --out "$OUT/init.safetensors" | grep -v "^  "
echo "== pretrain 1 step, then resume to step 2"
$MPIRUN $BIN pretrain --roco "$OUT/roco" --init "$OUT/init.safetensors" $common --out "$OUT/pre" --steps 2 \
    --batch-size 2 --checkpoint-every 1 --debug-stop-after 1 || [ $? -eq 143 ]
$MPIRUN $BIN pretrain --roco "$OUT/roco" $common --out "$OUT/pre" --steps 2 --batch-size 2 --checkpoint-every 1 --resume
echo "== export the last checkpoint and compare with final.safetensors"
$BIN export --weights "$OUT/pre/checkpoints/step-00000002" --teacher --out "$OUT/exported.safetensors"
python3 - "$OUT" <<'PY'
import json, struct, sys
def tensors(path):
    f = open(path, "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); base = 8 + n
    out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        f.seek(base + v["data_offsets"][0]); out[k] = f.read(v["data_offsets"][1] - v["data_offsets"][0])
    return out
a, b = tensors(sys.argv[1] + "/pre/final.safetensors"), tensors(sys.argv[1] + "/exported.safetensors")
same = a.keys() == b.keys() and all(a[k] == b[k] for k in a)
print(f"export vs final.safetensors: {len(a)} tensors, {'bit for bit identical' if same else 'DIFFERENT'}")
sys.exit(0 if same else 1)
PY
echo "== TD-Calib on VQA-RAD (384 px)"
$MPIRUN $BIN calib --task vqa-rad --data "$OUT/vqa" --init "$OUT/exported.safetensors" $common --out "$OUT/calib" \
    --steps 1 --batch-size 2
echo "== GM-Coord fine-tuning"
$MPIRUN $BIN finetune --task vqa-rad --data "$OUT/vqa" --init "$OUT/calib/final.safetensors" $common --out "$OUT/ft" \
    --steps 1 --batch-size 2
echo "== eval"
$MPIRUN $BIN eval --task vqa-rad --data "$OUT/vqa" --weights "$OUT/ft/final.safetensors" --tokenizer "$HF/tokenizer"
