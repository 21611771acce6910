#!/usr/bin/env bash
# VGG16 fully fine-tuned on a lent GPU machine (the `device` tool), from a pack (train/pack.py) carried in pieces.
# The steps and why: docs/training.md, "On a lent GPU". Each step is one short command, run from the checkout's root.
#
# Here, before:  bash train/lent_gpu.sh split PACK [SMOKE_PACK]   pieces of PACK (and SMOKE_PACK whole) in gpu/
#                bash train/lent_gpu.sh plan [python -m train options]   the device calls, in order: carry + command
# There:         bash train/lent_gpu.sh keep                       after each call that carried pieces: kept outside
#                                                                  the checkout (a later call may replace it)
#                bash train/lent_gpu.sh smoke                      the CUDA path, one epoch of SMOKE_PACK, timed
#                bash train/lent_gpu.sh start [python -m train options]   joins and checks the pieces, unpacks,
#                                                                  starts the run in the background
#                bash train/lent_gpu.sh status [SECONDS]           waits, then the run's last log lines and the GPU
#                bash train/lent_gpu.sh fetch                      the run's files into $OUT, weights in pieces
# Here, after:   bash train/lent_gpu.sh join FILES_AT RUN          the run folder from what fetch sent, checked
set -euo pipefail

# A call takes 64 MiB in all: the checkout's own files (tracked and untracked-not-ignored), what it carries, and on
# the first call the smoke pack and the sums. `split` sizes the pieces to what is left (PIECE_SIZE overrides it).
CALL_LIMIT=$((64 * 1024 * 1024))
MARGIN=$((512 * 1024))             # room for a file the checkout gains between `split` and the calls
PIECE_SIZE=${PIECE_SIZE:-}
RETURN_SIZE=${RETURN_SIZE:-15M}    # files come back through $OUT at up to 16 MiB each, 8 files and 64 MiB in all
WORK=${LENT_GPU_WORK:-$HOME/lent-gpu}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}             # cpu: the same steps on this machine (tests/test_pack.py)
RUN=$WORK/run

die() { echo "lent_gpu.sh: $*" >&2; exit 1; }
# the size and crops a pack was cut at, as python -m train options (a run must ask for what the pack holds)
as_packed() { $PYTHON -c "import json; p = json.load(open('$1/pack.json')); print('--image-size', p['image_size'], '--crops', p['crops'])"; }

case "${1:-}" in
split)  # here: PACK -> gpu/pack.tar.gz.NN and gpu/SHA256SUMS; SMOKE_PACK -> gpu/smoke/
    pack=${2:?split PACK [SMOKE_PACK]}
    [ -f "$pack/pack.json" ] || die "$pack is not a pack (python -m train.pack)"
    rm -rf gpu && mkdir -p gpu
    if [ -n "${3:-}" ]; then cp -r "$3" gpu/smoke; fi
    if [ -z "$PIECE_SIZE" ]; then
        travels=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -n 1 | cut -f 1)
        smoke=$(du -sb gpu | cut -f 1)
        PIECE_SIZE=$((CALL_LIMIT - travels - smoke - MARGIN))
        [ "$PIECE_SIZE" -ge $((4 * 1024 * 1024)) ] || die "the checkout alone travels $travels bytes: no room for pieces"
        echo "a call carries the checkout ($((travels / 1024)) KiB) and one piece of $((PIECE_SIZE / 1024)) KiB"
    fi
    # the pack's csv files shrink 5-fold in gzip; its images are WebP already
    tar -C "$(dirname "$pack")" -czf - "$(basename "$pack")" | split -b "$PIECE_SIZE" -d -a 2 - gpu/pack.tar.gz.
    (cd gpu && sha256sum pack.tar.gz.* > SHA256SUMS)
    ls -l gpu; du -sh gpu
    echo "$(ls gpu/pack.tar.gz.* | wc -l) pieces: one call each, back to back (an idle machine goes back in 30 s)"
    ;;
plan)   # here: each device call's carry and command, to send back to back (a machine idle for 30 s goes back)
    shift
    shopt -s nullglob
    pieces=(gpu/pack.tar.gz.*)
    [ ${#pieces[@]} -gt 0 ] || die "no pieces in gpu/: run split first"
    last=$((${#pieces[@]} - 1))
    for i in "${!pieces[@]}"; do
        carry="\"${pieces[$i]}\""
        command="bash train/lent_gpu.sh keep"
        if [ "$i" -eq 0 ]; then
            carry="$carry, \"gpu/SHA256SUMS\""
            if [ -d gpu/smoke ]; then carry="$carry, \"gpu/smoke\""; command="$command && bash train/lent_gpu.sh smoke"; fi
        fi
        if [ "$i" -eq "$last" ]; then command="$command && bash train/lent_gpu.sh start $*"; fi
        echo "call $((i + 1)): carry [$carry]"
        echo "  command: $command"
    done
    echo "then: bash train/lent_gpu.sh status 420 (while the device time lasts), then OUT=\$OUT bash train/lent_gpu.sh fetch"
    ;;
keep)   # there: move what this call carried out of the checkout
    mkdir -p "$WORK/pieces"
    shopt -s nullglob
    for f in gpu/pack.tar.gz.* gpu/SHA256SUMS; do
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
    cat "$WORK"/pieces/pack.tar.gz.* | tar -C "$WORK/pack" -xzf -
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
fetch)  # there: the run's records in one file, its weights in pieces, their sha256 (at most 8 files come back)
    [ -n "${OUT:-}" ] || die "\$OUT is not set (the device tool sets it)"
    [ -f "$RUN/model/model.safetensors" ] || die "no model yet in $RUN"
    mkdir -p "$OUT/run"
    cp "$WORK/train.log" "$RUN/train.log"
    records=()
    for f in model/config.json train.log history.csv metrics.json train_config.json data_report.json split.csv; do
        if [ -f "$RUN/$f" ]; then records+=("$f"); fi
    done
    tar -C "$RUN" -czf "$OUT/run/records.tar.gz" "${records[@]}"
    # a copy first: a run still going replaces its model after each better epoch, and the sum must match the pieces
    rm -rf "$WORK/fetched" && mkdir -p "$WORK/fetched" && cp "$RUN/model/model.safetensors" "$WORK/fetched/"
    (cd "$WORK/fetched" && sha256sum model.safetensors > "$OUT/run/SHA256SUMS")
    split -b "$RETURN_SIZE" -d -a 2 "$WORK/fetched/model.safetensors" "$OUT/run/model.safetensors."
    files=$(find "$OUT" -type f | wc -l); bytes=$(du -cb "$OUT"/run/* | tail -n 1 | cut -f 1)
    [ "$files" -le 8 ] && [ "$bytes" -le "$CALL_LIMIT" ] || die "$files files, $bytes bytes: more than comes back"
    ls -l "$OUT/run"
    ;;
join)   # here: FILES_AT (the device tool's files_at) -> RUN, the weights joined and checked
    from=${2:?join FILES_AT RUN}; run=${3:?join FILES_AT RUN}
    src=$(dirname "$(find "$from" -path '*/run/SHA256SUMS' | head -n 1)")
    [ -f "$src/records.tar.gz" ] || die "no run/SHA256SUMS and run/records.tar.gz under $from"
    mkdir -p "$run/model"
    tar -C "$run" -xzf "$src/records.tar.gz"
    cat "$src"/model.safetensors.* > "$run/model/model.safetensors"
    cp "$src/SHA256SUMS" "$run/model/"
    (cd "$run/model" && sha256sum -c --quiet SHA256SUMS) || die "the weights came back damaged: fetch again"
    rm "$run/model/SHA256SUMS"
    echo "joined: $run"
    ;;
*)
    sed -n '2,16p' "$0"; exit 2
    ;;
esac
