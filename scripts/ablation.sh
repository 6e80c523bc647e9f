#!/usr/bin/env bash
# The paper's ablation (its Table 4) in miniature: on generated ROCO + VQA-RAD at the tiny
# preset, fine-tuning from scratch vs from MR-Pretrain with MIM+MLM(+ITM), with the
# feature-level losses added, with TD-Calib, and with GM-Coord under both contribution
# variants (--gm-contribution reference | ablation), then the better of the two with
# --pooling mean — S seeds each (5 by default), on 2 ranks. Controls: GM-Coord without
# TD-Calib, and --pooling mean without GM-Coord.
#
# The downstream set has the two properties TD-Calib and GM-Coord target: a text shortcut on
# half the closed questions (truthful in training, random in the test split) and an
# intensity shift from the pretraining images. Its test split is large (800 images, 2,400
# questions) so one run's sampling error (binomial sd) is below 0.01.
#
# Writes to DIR:
#   ablation.md    mean ± sd per row of the test accuracy (overall, open, closed; closed split
#                  into questions with the shortcut cue and without), the GM-Coord diagnostics
#                  (k and S per logged step; each modality's contribution at the end of training
#                  on the training split's closed questions, cued vs not), how many test answers
#                  each row changes against the row above (same seed), and the pretraining's ITM
#   ablation.png   the overall accuracy as bars (± sd)
#   results.tsv    every fine-tuning run; pretrain.tsv every pretraining run
#   gm-coord-*.png per GM-Coord row (seed 1): loss, ρ_t, k_t, k_i, S_t, S_i over training
# Usage: scripts/ablation.sh [--quick] [--seeds S] [BINARY] [DIR]
set -euo pipefail
QUICK=0; SEEDS=5
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
  COUNT=(120 160); TEST=20; PRE=6; CAL=3; FT=8; BATCH=8
else
  # 1,500 pretraining steps: ITM sits at ln 2 for its first ~500 steps here (300 never left
  # it), then learns (held-out ROCO retrieval with the ITM head: R@10 0.17 = chance at 300
  # steps, 0.72 at 1,500, 0.85 at 3,000).
  COUNT=(600 800); TEST=800; PRE=1500; CAL=100; FT=600; BATCH=32
fi
rm -rf "$DIR" && mkdir -p "$DIR"
"$BIN" synth --kind roco --out "$DIR/roco" --count "${COUNT[0]}" --seed 1 --image-size 64 > /dev/null
SHORTCUT=${SHORTCUT:-0.5}; SHIFT=${SHIFT:-0.4}
"$BIN" synth --kind vqa-rad --out "$DIR/vqa-rad" --count "${COUNT[1]}" --test-count "$TEST" --seed 2 --image-size 64 \
    --shortcut "$SHORTCUT" --intensity-shift "$SHIFT" > /dev/null
"$BIN" tokenizer train --roco "$DIR/roco" --vqa-rad "$DIR/vqa-rad" --vocab-size 1000 --out "$DIR/tok" > /dev/null
common="--preset tiny --tokenizer $DIR/tok --log-every 10 --batch-size $BATCH"
run() { "$@" > "$DIR/last.log" 2>&1 || { cat "$DIR/last.log"; exit 1; }; }
CUE='\((finding noted|unremarkable)\)"'

# Mean of a JSON-lines field over lines matching a pattern (awk: no Python needed).
mean_field() {  # file field [grep -E pattern]
  { grep -E "${3:-.}" "$1" || true; } | sed -n "s/.*\"$2\":\([0-9.eE+-]*\).*/\1/p" | awk '{ s += $1; n++ } END { if (n) printf "%.3f", s / n; else printf "nan" }'
}
# Closed-question accuracy of a predictions file, with or without the shortcut cue.
closed_accuracy() {  # file cued|plain
  { grep '"closed":true' "$1" || true; } | { if [ "$2" = cued ]; then grep -E "$CUE" || true; else grep -Ev "$CUE" || true; fi; } \
    | awk '/"correct":true/ { c++ } { n++ } END { if (n) printf "%.3f", c / n; else printf "nan" }'
}

: > "$DIR/pretrain.tsv"
: > "$DIR/results.tsv"
# rows: name | pretraining objectives (none = scratch) | TD-Calib | GM-Coord | contribution | pooling
# The two "+ FeaMIM, FeaMLM, GM-Coord" rows are controls: GM-Coord without TD-Calib.
ROWS=("scratch|none|no|off|reference|cls" "scratch + GM-Coord|none|no|on|reference|cls"
      "MIM+MLM(+ITM)|mim,mlm,itm|no|off|reference|cls" "+ FeaMIM, FeaMLM|mim,mlm,feamim,feamlm,itm|no|off|reference|cls"
      "+ FeaMIM, FeaMLM, GM-Coord reference (no TD-Calib)|mim,mlm,feamim,feamlm,itm|no|on|reference|cls"
      "+ FeaMIM, FeaMLM, GM-Coord ablation (no TD-Calib)|mim,mlm,feamim,feamlm,itm|no|on|ablation|cls"
      "+ TD-Calib|mim,mlm,feamim,feamlm,itm|yes|off|reference|cls"
      "+ GM-Coord (full), reference|mim,mlm,feamim,feamlm,itm|yes|on|reference|cls"
      "+ GM-Coord (full), ablation|mim,mlm,feamim,feamlm,itm|yes|on|ablation|cls")

pretrain_seed() {
  local seed=$1
  for objectives in mim,mlm,itm mim,mlm,feamim,feamlm,itm; do
    local out="$DIR/s$seed/pre-$objectives"
    run $MPIRUN "$BIN" pretrain --roco "$DIR/roco" $common --objectives "$objectives" --steps "$PRE" --seed "$seed" --out "$out"
    # ITM at the start and the end (mean of the first / last 5 logged steps), and whether it
    # aligns images with captions it never saw: ROCO test retrieval scored by the ITM head
    # (head.score starts as ITM's "match" row; one step at lr 1e-12 only writes it out).
    local itm; itm=$(sed -n 's/.*"itm":\([0-9.eE+-]*\).*/\1/p' "$out/metrics.jsonl" \
      | awk '{ v[NR] = $1 } END { for (i = 1; i <= 5 && i <= NR; i++) a += v[i]; for (i = NR - 4; i <= NR; i++) if (i > 0) b += v[i]
                                  printf "%.3f\t%.3f", a / (NR < 5 ? NR : 5), b / (NR < 5 ? NR : 5) }')
    run $MPIRUN "$BIN" finetune --task roco-retrieval --data "$DIR/roco" $common --init "$out" --steps 1 --lr 1e-12 \
        --seed "$seed" --out "$out-retrieval"
    run $MPIRUN "$BIN" eval --task roco-retrieval --data "$DIR/roco" --tokenizer "$DIR/tok" --weights "$out-retrieval/final.safetensors"
    local json="$out-retrieval/eval-final-roco-retrieval-test.json"
    printf '%s\t%s\t%s\t%s\t%s\n' "$objectives" "$seed" "$itm" "$(sed -n 's/.*"i2t_R@10" : \([0-9.eE+-]*\).*/\1/p' "$json")" \
        "$(sed -n 's/.*"chance_R@10" : \([0-9.eE+-]*\).*/\1/p' "$json")" >> "$DIR/pretrain.tsv"
  done
  run $MPIRUN "$BIN" calib --task vqa-rad --data "$DIR/vqa-rad" $common --init "$DIR/s$seed/pre-mim,mlm,feamim,feamlm,itm" \
      --steps "$CAL" --seed "$seed" --out "$DIR/s$seed/calib"
}

finetune_row() {  # row seed previous-predictions
  local name objectives calib gm contribution pooling
  IFS='|' read -r name objectives calib gm contribution pooling <<< "$1"
  local seed=$2 previous=${3:-}
  local init=()
  if [ "$calib" = yes ]; then init=(--init "$DIR/s$seed/calib"); elif [ "$objectives" != none ]; then init=(--init "$DIR/s$seed/pre-$objectives"); fi
  local out; out="$DIR/s$seed/ft-$(echo "$name" | tr -c 'A-Za-z0-9' '_')"
  run $MPIRUN "$BIN" finetune --task vqa-rad --data "$DIR/vqa-rad" $common "${init[@]}" --gm-coord "$gm" \
      --gm-contribution "$contribution" --pooling "$pooling" --steps "$FT" --seed "$seed" --out "$out"
  for split in test train; do
    run $MPIRUN "$BIN" eval --task vqa-rad --data "$DIR/vqa-rad" --tokenizer "$DIR/tok" --weights "$out/final.safetensors" \
        --split "$split" --predictions "$out/predictions-$split.jsonl"
  done
  local json="$out/eval-final-vqa-rad-test.json"
  field() { sed -n "s/.*\"$1\" : \([0-9.eE+-]*\).*/\1/p" "$json"; }
  # GM-Coord per logged step: mean and smallest k of each modality, the mean contributions S/G.
  local k; k=$(awk -v G="$BATCH" '
      function get(key) { return match($0, "\"" key "\":[-0-9.eE+]+") ? substr($0, RSTART + length(key) + 3, RLENGTH - length(key) - 3) : "" }
      get("k_i") != "" { n++; ki += get("k_i"); kt += get("k_t"); st += get("S_t"); si += get("S_i")
                         if (n == 1 || get("k_i") + 0 < mi) mi = get("k_i") + 0; if (n == 1 || get("k_t") + 0 < mt) mt = get("k_t") + 0 }
      END { if (n) printf "%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f", ki / n, mi, kt / n, mt, st / n / G, si / n / G
            else printf "\t\t\t\t\t" }' "$out/metrics.jsonl")
  # Each modality's contribution at the end, on the training split's closed questions
  # (where the cue tells the truth), under the row's variant.
  local train="$out/predictions-train.jsonl" closed='"closed":true'
  grep -E "$CUE" "$train" > "$out/train-cued.jsonl" || true
  grep -Ev "$CUE" "$train" > "$out/train-plain.jsonl" || true
  local contributions
  contributions=$(printf '%s\t%s\t%s\t%s' \
    "$(mean_field "$out/train-cued.jsonl" "p_text_$contribution" "$closed")" \
    "$(mean_field "$out/train-cued.jsonl" "p_image_$contribution" "$closed")" \
    "$(mean_field "$out/train-plain.jsonl" "p_text_$contribution" "$closed")" \
    "$(mean_field "$out/train-plain.jsonl" "p_image_$contribution" "$closed")")
  # Test answers that differ from the row above's (same seed): 0 would mean the same model.
  local differing=""
  if [ -n "$previous" ]; then
    # "answer" is each line's first key (sorted keys); the later ones are the top-k list's.
    differing=$(paste -d '\n' <(sed -n 's/^{"answer":"\([^"]*\)".*/\1/p' "$previous") \
                              <(sed -n 's/^{"answer":"\([^"]*\)".*/\1/p' "$out/predictions-test.jsonl") \
      | awk 'NR % 2 == 1 { a = $0; next } { n++; if ($0 != a) d++ } END { printf "%d", d }')
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$seed" "$(field overall)" "$(field open)" "$(field closed)" \
      "$(field majority_overall)" "$gm" "$(closed_accuracy "$out/predictions-test.jsonl" cued)" \
      "$(closed_accuracy "$out/predictions-test.jsonl" plain)" "$k" "$contributions" "$differing" >> "$DIR/results.tsv"
  if [ "$gm" = on ] && [ "$seed" = 1 ]; then
    "$BIN" plot "$out" --out "$DIR/gm-coord-$(basename "$out").png" > /dev/null
  fi
  echo "ablation: seed $seed, $name: overall $(field overall)" >&2
  PREVIOUS="$out/predictions-test.jsonl"
}

for seed in $(seq 1 "$SEEDS"); do
  pretrain_seed "$seed"
  PREVIOUS=""
  for row in "${ROWS[@]}"; do finetune_row "$row" "$seed" "$PREVIOUS"; done
done
# --pooling mean without GM-Coord (a control), then with the contribution variant of the
# better GM-Coord row (overall mean).
for seed in $(seq 1 "$SEEDS"); do
  finetune_row "+ TD-Calib, mean pooling (no GM-Coord)|mim,mlm,feamim,feamlm,itm|yes|off|reference|mean" "$seed" \
      "$DIR/s$seed/ft-$(echo "+ TD-Calib" | tr -c 'A-Za-z0-9' '_')/predictions-test.jsonl"
done
BEST=$(awk -F'\t' '$1 ~ /^\+ GM-Coord \(full\)/ { s[$1] += $3; n[$1]++ }
                   END { best = "reference"; top = -1
                         for (k in s) if (s[k] / n[k] > top) { top = s[k] / n[k]; best = k }
                         sub(/.*, /, "", best); print best }' "$DIR/results.tsv")
for seed in $(seq 1 "$SEEDS"); do
  PREVIOUS="$DIR/s$seed/ft-$(echo "+ GM-Coord (full), $BEST" | tr -c 'A-Za-z0-9' '_')/predictions-test.jsonl"
  finetune_row "+ GM-Coord (full), $BEST, mean pooling|mim,mlm,feamim,feamlm,itm|yes|on|$BEST|mean" "$seed" "$PREVIOUS"
done

# Mean ± sample standard deviation per row, in the order run.
awk -F'\t' '
  function sd(sum, squares, n,   m, v) { m = sum / n; v = n > 1 ? (squares - n * m * m) / (n - 1) : 0; return sqrt(v < 0 ? 0 : v) }
  { if (!($1 in n)) order[++rows] = $1; n[$1]++; s[$1] += $3; q[$1] += $3 * $3; op[$1] += $4; cl[$1] += $5; maj = $6
    gm[$1] = $7; cu[$1] += $8; cuq[$1] += $8 * $8; pl[$1] += $9
    ki[$1] += $10; kimin[$1] += $11; kt[$1] += $12; ktmin[$1] += $13; st[$1] += $14; si[$1] += $15
    ptc[$1] += $16; pic[$1] += $17; ptp[$1] += $18; pip[$1] += $19
    if ($20 != "") { dn[$1]++; d[$1] += $20; if (!($1 in dmin) || $20 < dmin[$1]) dmin[$1] = $20 } }
  END {
    print "| setting | overall (mean ± sd) | open | closed | closed, cued (mean ± sd) | closed, no cue | seeds | answers changed vs row above: mean (min) |"
    print "|---|---|---|---|---|---|---|---|"
    for (r = 1; r <= rows; r++) {
      k = order[r]
      changed = dn[k] ? sprintf("%.0f (%d)", d[k] / dn[k], dmin[k]) : ""
      printf "| %s | %.3f ± %.3f | %.3f | %.3f | %.3f ± %.3f | %.3f | %d | %s |\n", k, s[k] / n[k], sd(s[k], q[k], n[k]),
             op[k] / n[k], cl[k] / n[k], cu[k] / n[k], sd(cu[k], cuq[k], n[k]), pl[k] / n[k], n[k], changed
    }
    printf "| majority baseline | %.3f | 0.000 | | | | | |\n", maj
    print ""
    print "GM-Coord over training (per logged step, mean over seeds) and each modality'\''s contribution p at the end"
    print "(training split, closed questions; p = softmax at the truth of the text-only / image-only prediction under"
    print "the row'\''s --gm-contribution variant):"
    print ""
    print "| setting | k_t mean (min) | k_i mean (min) | S_t / G | S_i / G | cued: p_text | cued: p_image | no cue: p_text | no cue: p_image |"
    print "|---|---|---|---|---|---|---|---|---|"
    for (r = 1; r <= rows; r++) {
      k = order[r]; if (gm[k] != "on") continue; m = n[k]
      printf "| %s | %.3f (%.3f) | %.3f (%.3f) | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", k, kt[k] / m, ktmin[k] / m,
             ki[k] / m, kimin[k] / m, st[k] / m, si[k] / m, ptc[k] / m, pic[k] / m, ptp[k] / m, pip[k] / m
    }
  }' "$DIR/results.tsv" > "$DIR/ablation.md"
awk -F'\t' '
  { key = $1; n[key]++; a[key] += $3; b[key] += $4; r[key] += $5; c = $6 }
  END {
    print ""
    print "Pretraining: ITM loss (mean of the first / last 5 logged steps) and ROCO test retrieval scored by the ITM head:"
    print ""
    print "| objectives | ITM first | ITM last | R@10 (chance) | seeds |"
    print "|---|---|---|---|---|"
    for (k in n) printf "| %s | %.3f | %.3f | %.3f (%.3f) | %d |\n", k, a[k] / n[k], b[k] / n[k], r[k] / n[k], c, n[k]
  }' "$DIR/pretrain.tsv" >> "$DIR/ablation.md"
cat "$DIR/ablation.md"
"$BIN" plot --bars "$DIR/results.tsv" --out "$DIR/ablation.png" > /dev/null
