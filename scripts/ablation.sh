#!/usr/bin/env bash
# The paper's ablation (its Table 4) in miniature: on generated ROCO + VQA-RAD at the tiny
# preset, fine-tuning from scratch vs from MR-Pretrain with MIM+MLM(+ITM), with the
# feature-level losses added, with TD-Calib, and with GM-Coord — S seeds each, on 2 ranks.
# Writes DIR/ablation.md (mean ± standard deviation of the VQA test accuracy per row, the
# majority baseline), DIR/ablation.png (the same as bars), DIR/results.tsv (every run), and
# GM-Coord diagnostics plots (ρ and k over training) of the runs with it.
# Usage: scripts/ablation.sh [--quick] [--seeds S] [BINARY] [DIR]
set -euo pipefail
QUICK=0; SEEDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; SEEDS=1; shift ;;
    --seeds) SEEDS=$2; shift 2 ;;
    *) break ;;
  esac
done
BIN=${1:-.build/release/umd-mpirun}
DIR=${2:-ablation-out}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
MPIRUN="mpirun -np ${RANKS:-2} --oversubscribe"
if [ "$QUICK" = 1 ]; then
  COUNT=(120 160); PRE=6; CAL=3; FT=8; BATCH=8
else
  COUNT=(600 800); PRE=300; CAL=100; FT=600; BATCH=32
fi
rm -rf "$DIR" && mkdir -p "$DIR"
"$BIN" synth --kind roco --out "$DIR/roco" --count "${COUNT[0]}" --seed 1 --image-size 64 > /dev/null
# The downstream set has the two properties TD-Calib and GM-Coord target: a text shortcut on
# closed questions (broken in the test split) and an intensity shift from the pretraining corpus.
SHORTCUT=${SHORTCUT:-0.5}; SHIFT=${SHIFT:-0.4}
"$BIN" synth --kind vqa-rad --out "$DIR/vqa-rad" --count "${COUNT[1]}" --seed 2 --image-size 64 \
    --shortcut "$SHORTCUT" --intensity-shift "$SHIFT" > /dev/null
"$BIN" tokenizer train --roco "$DIR/roco" --vqa-rad "$DIR/vqa-rad" --vocab-size 1000 --out "$DIR/tok" > /dev/null
common="--preset tiny --tokenizer $DIR/tok --log-every 10 --batch-size $BATCH"
run() { "$@" > "$DIR/last.log" 2>&1 || { cat "$DIR/last.log"; exit 1; }; }

# rows: name | pretraining objectives (none = scratch) | TD-Calib | GM-Coord
ROWS=("scratch|none|no|off" "scratch + GM-Coord|none|no|on" "MIM+MLM(+ITM)|mim,mlm,itm|no|off"
      "+ FeaMIM, FeaMLM|mim,mlm,feamim,feamlm,itm|no|off" "+ TD-Calib|mim,mlm,feamim,feamlm,itm|yes|off"
      "+ GM-Coord (full)|mim,mlm,feamim,feamlm,itm|yes|on")
for seed in $(seq 1 "$SEEDS"); do
  for objectives in mim,mlm,itm mim,mlm,feamim,feamlm,itm; do
    run $MPIRUN "$BIN" pretrain --roco "$DIR/roco" $common --objectives "$objectives" --steps "$PRE" --seed "$seed" \
        --out "$DIR/s$seed/pre-$objectives"
  done
  run $MPIRUN "$BIN" calib --task vqa-rad --data "$DIR/vqa-rad" $common --init "$DIR/s$seed/pre-mim,mlm,feamim,feamlm,itm" \
      --steps "$CAL" --seed "$seed" --out "$DIR/s$seed/calib"
  for row in "${ROWS[@]}"; do
    IFS='|' read -r name objectives calib gm <<< "$row"
    init=()
    if [ "$calib" = yes ]; then init=(--init "$DIR/s$seed/calib"); elif [ "$objectives" != none ]; then init=(--init "$DIR/s$seed/pre-$objectives"); fi
    out="$DIR/s$seed/ft-$(echo "$name" | tr -c 'A-Za-z0-9' '_')"
    run $MPIRUN "$BIN" finetune --task vqa-rad --data "$DIR/vqa-rad" $common "${init[@]}" --gm-coord "$gm" \
        --steps "$FT" --seed "$seed" --out "$out"
    run $MPIRUN "$BIN" eval --task vqa-rad --data "$DIR/vqa-rad" --tokenizer "$DIR/tok" --weights "$out/final.safetensors"
    json="$out/eval-final-vqa-rad-test.json"
    field() { sed -n "s/.*\"$1\" : \([0-9.eE+-]*\).*/\1/p" "$json"; }
    # GM-Coord diagnostics: mean and smallest k of each modality over the logged steps.
    k=$(sed -n 's/.*"k_i":\([0-9.eE+-]*\).*"k_t":\([0-9.eE+-]*\).*/\1 \2/p' "$out/metrics.jsonl" \
        | awk '{ ni++; si += $1; st += $2; if (ni == 1 || $1 < mi) mi = $1; if (ni == 1 || $2 < mt) mt = $2 }
               END { printf "%.3f\t%.3f\t%.3f\t%.3f", si / ni, mi, st / ni, mt }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$seed" "$(field overall)" "$(field open)" "$(field closed)" \
        "$(field majority_overall)" "$gm" "$k" >> "$DIR/results.tsv"
    if [ "$gm" = on ]; then "$BIN" plot "$out" --out "$DIR/gm-coord-$(basename "$out")-seed$seed.png" > /dev/null; fi
    echo "ablation: seed $seed, $name: overall $(tail -1 "$DIR/results.tsv" | cut -f3)"
  done
done
# Mean ± sample standard deviation per row, in the order run (awk: no Python needed).
awk -F'\t' '
  { if (!($1 in n)) order[++rows] = $1; n[$1]++; s[$1] += $3; q[$1] += $3 * $3; op[$1] += $4; cl[$1] += $5; maj = $6
    gm[$1] = $7; ki[$1] += $8; kimin[$1] += $9; kt[$1] += $10; ktmin[$1] += $11 }
  END {
    print "| setting | overall (mean ± sd) | open | closed | seeds | GM-Coord k_i mean (min) | k_t mean (min) |"
    print "|---|---|---|---|---|---|---|"
    for (r = 1; r <= rows; r++) {
      k = order[r]; m = s[k] / n[k]; v = n[k] > 1 ? (q[k] - n[k] * m * m) / (n[k] - 1) : 0; if (v < 0) v = 0
      diag = gm[k] == "on" ? sprintf("%.3f (%.3f) | %.3f (%.3f)", ki[k] / n[k], kimin[k] / n[k], kt[k] / n[k], ktmin[k] / n[k]) : " | "
      printf "| %s | %.3f ± %.3f | %.3f | %.3f | %d | %s |\n", k, m, sqrt(v), op[k] / n[k], cl[k] / n[k], n[k], diag
    }
    printf "| majority baseline | %.3f | 0.000 | | | | |\n", maj
  }' "$DIR/results.tsv" | tee "$DIR/ablation.md"
"$BIN" plot --bars "$DIR/results.tsv" --out "$DIR/ablation.png" > /dev/null
