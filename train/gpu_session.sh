#!/usr/bin/env bash
# Drive a training run on a lent, time-limited GPU machine that has JAX but no TensorFlow and no network.
#
#   bash train/gpu_session.sh start  MINUTES [CONFIG] [EXTRA --set ARGS...]  # install wheels, launch detached run
#   bash train/gpu_session.sh watch  SECONDS                                  # follow the log, export checkpoint
#   bash train/gpu_session.sh finish                                          # wait for the run to end, export
#
# Wheels (keras, namex, optree, soundfile, cffi, pycparser, pyloudnorm) travel in .whl/, the data pack in
# data/pack/. The run itself is detached (setsid) so it outlives each 10-minute command while the machine is warm;
# every command ends by exporting the newest checkpoint to $OUT so nothing is lost if the machine goes back.
set -u
RUN=/tmp/mlae_run
LOG=$RUN/stdout.log
mkdir -p "$RUN"
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax XLA_PYTHON_CLIENT_MEM_FRACTION=0.9
export PYTHONPATH=/tmp/site:$PWD

install() {
  [ -d /tmp/site/keras ] && return
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
}

export_ckpt() {
  [ -n "${OUT:-}" ] || return 0
  [ -f "$RUN/checkpoints/latest.json" ] && python3 train/export_checkpoint.py "$RUN" "$OUT/ckpt" --part-mb 15.9
  cp "$LOG" "$OUT/stdout.log" 2>/dev/null
  tail -c 300000 "$LOG" > "$OUT/stdout.log" 2>/dev/null
  return 0
}

alive() { [ -f "$RUN/pid" ] && kill -0 "$(cat "$RUN/pid")" 2>/dev/null; }

case "${1:-}" in
  start)
    minutes=$2; config=${3:-train/conf/small_24khz.yml}; shift 3 || shift $#
    install || exit 1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
    resume=""; [ -f "$RUN/checkpoints/latest.json" ] && resume="--resume"
    setsid nohup python3 train/train.py --config "$config" --run-dir "$RUN" --max-minutes "$minutes" $resume \
      --set data.source=data/pack data.workers=6 "$@" > "$LOG" 2>&1 < /dev/null &
    echo $! > "$RUN/pid"
    echo "launched pid $(cat $RUN/pid)"
    ;;
  watch)
    end=$((SECONDS + $2))
    while [ $SECONDS -lt $end ] && alive; do sleep 10; done
    alive && echo "run alive" || echo "run ended"
    grep -v "decode:" "$LOG" | tail -n 40
    export_ckpt
    ;;
  finish)
    while alive; do sleep 5; done
    grep -v "decode:" "$LOG" | tail -n 30
    export_ckpt
    ;;
  *) echo "usage: $0 start MINUTES [CONFIG] | watch SECONDS | finish" >&2; exit 2 ;;
esac
