#!/usr/bin/env bash
# VGG16 fully fine-tuned on a lent GPU machine (the `device` tool), from a pack (train/pack.py) carried in pieces.
# The steps and why: docs/training.md, "On a lent GPU". Each step is one short command, run from the checkout's root.
#
# Here, before:  bash train/lent_gpu.sh split PACK [SMOKE_PACK]   pieces of PACK (and SMOKE_PACK whole) in gpu/
# There:         bash train/lent_gpu.sh keep                       after each call that carried pieces: kept outside
#                                                                  the checkout (a later call may replace it)
#                bash train/lent_gpu.sh smoke                      the CUDA path, one epoch of SMOKE_PACK, timed
#                bash train/lent_gpu.sh start [python -m train options]   joins and checks the pieces, unpacks,
#                                                                  starts the run in the background
#                bash train/lent_gpu.sh status [SECONDS]           waits, then the run's last log lines and the GPU
#                bash train/lent_gpu.sh fetch                      the run's files into $OUT, weights in pieces
# Here, after:   bash train/lent_gpu.sh join FILES_AT RUN          the run folder from what fetch sent, checked
set -euo pipefail

PIECE_SIZE=${PIECE_SIZE:-54M}      # one piece and the smoke pack travel in one call (64 MiB of carry)
RETURN_SIZE=${RETURN_SIZE:-15M}    # files come back through $OUT at up to 16 MiB each
WORK=${LENT_GPU_WORK:-$HOME/lent-gpu}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}             # cpu: the same steps on this machine (tests/test_pack.py)
RUN=$WORK/run

die() { echo "lent_gpu.sh: $*" >&2; exit 1; }
# the size and crops a pack was cut at, as python -m train options (a run must ask for what the pack holds)
as_packed() { $PYTHON -c "import json; p = json.load(open('$1/pack.json')); print('--image-size', p['image_size'], '--crops', p['crops'])"; }

case "${1:-}" in
split)  # here: PACK -> gpu/pack.tar.NN and gpu/SHA256SUMS; SMOKE_PACK -> gpu/smoke/
    pack=${2:?split PACK [SMOKE_PACK]}
    [ -f "$pack/pack.json" ] || die "$pack is not a pack (python -m train.pack)"
    rm -rf gpu && mkdir -p gpu
    tar -C "$(dirname "$pack")" -cf - "$(basename "$pack")" | split -b "$PIECE_SIZE" -d -a 2 - gpu/pack.tar.
    (cd gpu && sha256sum pack.tar.* > SHA256SUMS)
    if [ -n "${3:-}" ]; then cp -r "$3" gpu/smoke; fi
    ls -l gpu; du -sh gpu
    ;;
keep)   # there: move what this call carried out of the checkout
    mkdir -p "$WORK/pieces"
    shopt -s nullglob
    for f in gpu/pack.tar.* gpu/SHA256SUMS; do
        if [ -e "$f" ]; then mv -f "$f" "$WORK/pieces/"; fi  # a call may carry a piece without the sums
    done
    if [ -d gpu/smoke ]; then rm -rf "$WORK/smoke" && mv gpu/smoke "$WORK/smoke"; fi
    ls -l "$WORK/pieces"
    ;;
smoke)  # there: does the CUDA path run, and how fast?
    [ -d "$WORK/smoke" ] || die "no smoke pack: carry gpu/smoke and run keep first"
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
    rm -rf "$WORK/smoke-run"
    $PYTHON -m train --model vgg16 --data "$WORK/smoke" $(as_packed "$WORK/smoke") --device "$DEVICE" --tuned-blocks 5 \
        --precision bf16 --epochs 1 --head-epochs 0 --batch-size 128 --vgg-weights random --out "$WORK/smoke-run"
    $PYTHON -c "import csv; r = list(csv.DictReader(open('$WORK/smoke-run/history.csv')))[-1]; \
print('smoke:', r['images_per_s'], 'images/s,', r['seconds'], 's')"
    ;;
start)  # there: every piece present and unchanged, then the run in the background
    shift
    cd "$WORK/pieces" && sha256sum -c --quiet SHA256SUMS || die "a piece is missing or damaged: carry it again"
    cd - >/dev/null
    rm -rf "$WORK/pack" && mkdir -p "$WORK/pack"
    cat "$WORK"/pieces/pack.tar.* | tar -C "$WORK/pack" -xf -
    pack=$(dirname "$(ls "$WORK"/pack/*/pack.json)")
    # ImageNet's VGG16 weights live in ../shared, which does not travel: random unless asked (the recipe's --init-from
    # replaces them anyway); the options given after it win
    setsid nohup $PYTHON -m train --model vgg16 --data "$pack" $(as_packed "$pack") --device "$DEVICE" --out "$RUN" \
        --vgg-weights random "$@" \
        > "$WORK/train.log" 2>&1 < /dev/null &
    echo "started: pid $!, log $WORK/train.log"
    ;;
status) # there: keeps the machine busy for SECONDS (default 0), then reports
    sleep "${2:-0}"
    tail -c 1500 "$WORK/train.log" | tr '\r' '\n' | tail -n 12
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || true
    ;;
fetch)  # there: the run's records whole, its weights in pieces, with their sha256
    [ -n "${OUT:-}" ] || die "\$OUT is not set (the device tool sets it)"
    [ -f "$RUN/model/model.safetensors" ] || die "no model yet in $RUN"
    mkdir -p "$OUT/run/model"
    for f in history.csv metrics.json train_config.json data_report.json split.csv; do
        if [ -f "$RUN/$f" ]; then cp "$RUN/$f" "$OUT/run/"; fi
    done
    cp "$RUN/model/config.json" "$OUT/run/model/"
    cp "$WORK/train.log" "$OUT/run/train.log"
    (cd "$RUN/model" && sha256sum model.safetensors > "$OUT/run/model/SHA256SUMS")
    split -b "$RETURN_SIZE" -d -a 2 "$RUN/model/model.safetensors" "$OUT/run/model/model.safetensors."
    ls -l "$OUT/run" "$OUT/run/model"
    ;;
join)   # here: FILES_AT (the device tool's files_at) -> RUN, the weights joined and checked
    from=${2:?join FILES_AT RUN}; run=${3:?join FILES_AT RUN}
    src=$(dirname "$(find "$from" -path '*/run/model/SHA256SUMS' | head -n 1)")/..
    [ -d "$src" ] || die "no run/model/SHA256SUMS under $from"
    mkdir -p "$run/model"
    cp "$src"/*.csv "$src"/*.json "$src"/train.log "$run/" 2>/dev/null || true
    cp "$src/model/config.json" "$src/model/SHA256SUMS" "$run/model/"
    cat "$src"/model/model.safetensors.* > "$run/model/model.safetensors"
    (cd "$run/model" && sha256sum -c --quiet SHA256SUMS) || die "the weights came back damaged: fetch again"
    rm "$run/model/SHA256SUMS"
    echo "joined: $run"
    ;;
*)
    sed -n '2,16p' "$0"; exit 2
    ;;
esac
