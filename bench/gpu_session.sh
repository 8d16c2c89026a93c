#!/usr/bin/env bash
# One call on the lent GPU machine (see ../shared/device/README.md and docs/GPU.md).
# Prepared here by `bash bench/prepare_gpu_carry.sh` (wheels, weights, data under .carry/), run with
#   run(command="bash bench/gpu_session.sh", carry=[".carry"], timeout_s=600)
#
# Jobs, each switched by a variable (1 runs it, 0 skips it), in this order:
#   BENCH  training speed of TOOD X-101 at batch 16, BENCH_SETTINGS side by side (GPU to itself)
#   TRAIN  the demo model: TRAIN_CONFIG (TOOD + the EfficientNet-Lite whose ImageNet weights were
#          carried: Lite0 unless prepare_gpu_carry.sh had BACKBONE=lite2) for TRAIN_MINUTES; "auto" (the
#          default) trains until DEADLINE leaves room for the rest. It starts where
#          prepare_gpu_carry.sh's START said: the ImageNet-pretrained backbone (START=imagenet) or the
#          demo model's own weights, to train it further (START=demo). A comma list of configs
#          trains them side by side on the GPU, each for the same minutes
#   X101   TOOD X-101 from scratch for X101_MINUTES (default 2), started beside TRAIN on the same
#          GPU (its iteration count is therefore lower than alone), then evaluated on the carried
#          valid images whole and sliced at 320 px (X101_CONFIG: another config, e.g. the smoke one)
#   INFER  slices batched against one at a time on a 12 MP photo, on the GPU alone, with the model
#          TRAIN made from its first config (else model_store/trouble.mar), if at least 30 s are left before DEADLINE
#   EXPERIMENTS  a comma list of train.experiments comparisons (e.g. copy_paste; empty: none), each
#          TOOD row on the carried ImageNet-pretrained Lite backbone for EXPERIMENT_MINUTES (default 2),
#          evaluated on the carried valid images; EXPERIMENT_ARGS adds options (--smoke for a dry run)
# DEADLINE (seconds from the start, default 570) keeps the call inside the device's 600 s limit.
# VAL_INTERVAL (default 300): how often training validates on the carried valid images.
# INSTALL=0 skips installing the wheels: a dry run here on CPU with python3 pointing at .venv
# (--amp needs CUDA: TRAIN and X101 then retry in float32). Scratch files go under SCRATCH: /tmp on
# the (fresh) device machine, a new temporary folder in a dry run, so that runs side by side here
# never share or delete each other's folders; the dry run prints where.
# Everything comes back under $OUT (8 files at most): session.log, results.tar.gz (logs, metrics,
# configs; rewritten after each job, so a call cut short still brings back what finished) and each
# trained model's float16 checkpoint in parts under 16 MiB, NAME_work.CHECKPOINT.partNN, NAME being
# the config's file name without "tood_" and ".py". results.tar.gz holds NAME_work/ (its
# run_meta.json and resolved_config.py): `cat` the parts into it as CHECKPOINT and
# `python -m train.archive --work-dir NAME_work` archives it here (docs/GPU.md).
set -u
INSTALL=${INSTALL:-1}
if [ "$INSTALL" = 1 ]; then SCRATCH=${SCRATCH:-/tmp}; else SCRATCH=${SCRATCH:-$(mktemp -d)} || exit 1; fi
[ -n "$SCRATCH" ] || exit 1
OUT=${OUT:-$SCRATCH/out}
# X101 and INFER were measured on the H100 (bench/results/h100-2026-11-26): off unless asked for.
BENCH=${BENCH:-1} TRAIN=${TRAIN:-1} X101=${X101:-0} INFER=${INFER:-0}
BENCH_SETTINGS=${BENCH_SETTINGS:-fp32,amp,fast,fast-2x-batch}
# The carried ImageNet backbone weights (START=imagenet), and the configs built on that backbone.
BACKBONE_WEIGHTS=$(ls .carry/weights/efficientnet-lite*-fp16.pth 2>/dev/null | head -n 1)
case "$BACKBONE_WEIGHTS" in
  *lite2*) LITE=lite2;;
  *) LITE=lite0;;  # also with no weights (START=demo): TRAIN and EXPERIMENTS check below
esac
TRAIN_CONFIG=${TRAIN_CONFIG:-train/configs/tood_efficientnet-${LITE}_fpn_acne04.py}
TRAIN_MINUTES=${TRAIN_MINUTES:-auto}
X101_MINUTES=${X101_MINUTES:-2}
X101_CONFIG=${X101_CONFIG:-train/configs/tood_x101-64x4d_fpn_acne04.py}
EXPERIMENTS=${EXPERIMENTS:-} EXPERIMENT_MINUTES=${EXPERIMENT_MINUTES:-2} EXPERIMENT_ARGS=${EXPERIMENT_ARGS:-}
DEADLINE=${DEADLINE:-570}
# Validation on the carried valid images every VAL_INTERVAL iterations; the best checkpoint is kept.
# A large value validates only at the end, which keeps the last checkpoint (few valid images carried).
VAL_INTERVAL=${VAL_INTERVAL:-300}
RESULTS=$SCRATCH/results
rm -rf "$RESULTS"  # a second call on a warm machine brings back its own results only
mkdir -p "$OUT" "$RESULTS"
exec > >(tee "$OUT/session.log") 2>&1
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
stamp() { echo "[gpu_session +$(elapsed)s] $*"; }
stamp "scratch folder $SCRATCH, results under $OUT"
save_results() { tar -czf "$OUT/results.tar.gz" -C "$RESULTS" .; }

if [ "$INSTALL" = 1 ]; then
  stamp "installing wheels"
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SCRATCH/site" .carry/wheels/*.whl || exit 1
fi
export PYTHONPATH=$SCRATCH/site:$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
# prepare_gpu_carry.sh packs the data as one file (the call's size limit): unpacked into the scratch
# folder, the tar kept, so that a dry run here leaves .carry as it was for the call.
DATA=.carry/data/acne04
if [ -f .carry/data.tar ]; then
  mkdir -p "$SCRATCH/carried" && tar -xf .carry/data.tar -C "$SCRATCH/carried" || exit 1
  DATA=$SCRATCH/carried/data/acne04
fi
[ -f "$DATA/train/annotations.json" ] || { stamp "no data under .carry: run bench/prepare_gpu_carry.sh"; exit 1; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || stamp "no nvidia-smi"
python3 -c "import torch, mmcv, mmdet, mmcv.ops; print('torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'cuda', torch.cuda.is_available())" || exit 1
# Evaluation and inference also need SAHI and its dependencies; say which are missing, if any.
python3 -c "import sahi.predict, pycocotools, trouble.inference" || { stamp "SAHI stack incomplete: training runs; X101's evaluation, INFER and EXPERIMENTS will fail"; }

if [ "$BENCH" = 1 ]; then
  stamp "training-speed benchmark: $BENCH_SETTINGS"
  timeout 260 python3 -m bench.train_speed --config train/configs/tood_x101-64x4d_fpn_acne04.py \
    --data "$DATA" --batch-size 16 --iters 30 --warmup 10 --settings "$BENCH_SETTINGS" \
    --out "$RESULTS/train_speed.json" || stamp "benchmark did not finish"
  save_results
fi

train() {  # $1: work dir, then train.train's flags
  local work=$1; shift
  python3 -m train.train "$@" --data "$DATA" --work-dir "$work" \
    --batch-size 16 --val-interval "$VAL_INTERVAL" --fast --no-eval --no-archive
}
train_amp_or_fp32() {  # the same as train, with AMP; once more in float32 if that fails
  local work=$1
  train "$@" --amp && return 0
  stamp "AMP run failed; training again in float32"
  rm -rf "$work"
  train "$@" || { stamp "float32 run failed too"; return 1; }
}
keep_logs() {  # $1: work dir, $2: name prefix in the results
  cp "$1/run_meta.json" "$RESULTS/$2_run_meta.json" 2>/dev/null
  find "$1" -name scalars.json -exec cp {} "$RESULTS/$2_train_scalars.json" \;
  find "$1" -name "*.log" -exec cp {} "$RESULTS/$2_train.log" \;
}

x101_job() {  # runs in the background beside TRAIN; its output goes to x101_session.log
  local work=$SCRATCH/work/x101
  stamp "X101: training $X101_CONFIG from scratch for $X101_MINUTES min with AMP, beside TRAIN"
  train_amp_or_fp32 "$work" "$X101_CONFIG" --from-scratch --budget-minutes "$X101_MINUTES" --workers 6
  [ -f "$work/run_meta.json" ] || { stamp "X101: no trained model"; return 1; }
  keep_logs "$work" x101
  for sliced in false true; do
    stamp "X101: evaluating on the carried valid images, sliced=$sliced"
    python3 -m train.evaluate --work-dir "$work" --gt "$DATA/valid/annotations.json" \
      --sliced "$sliced" --slice-size 320 --out "$RESULTS/x101_eval_sliced_$sliced" || stamp "X101: evaluation failed"
  done
  stamp "X101: done"
}
if [ "$X101" = 1 ]; then
  x101_job > "$RESULTS/x101_session.log" 2>&1 &
  x101_pid=$!
fi

train_one() {  # $1: config, $2: its name; trains, then leaves the model in $RESULTS and $OUT
  local config=$1 name=$2 work=$SCRATCH/work/$2
  stamp "$name: training $config for $minutes min with AMP, starting from ${start_from[*]}"
  train_amp_or_fp32 "$work" "$config" --budget-minutes "$minutes" --workers "$workers" "${start_from[@]}"
  [ -f "$work/run_meta.json" ] || { stamp "$name: no trained model"; return 1; }
  # Archived here afterwards (train.archive --work-dir), so this machine needs no SAHI: what
  # comes back is the work dir's record and its checkpoint, in float16.
  stamp "$name: keeping the trained model: float16 checkpoint, run_meta.json, resolved_config.py"
  mkdir -p "$RESULTS/${name}_work"
  cp "$work/run_meta.json" "$work/resolved_config.py" "$RESULTS/${name}_work/"
  local checkpoint
  checkpoint=$(python3 -c "import json; print(json.load(open('$work/run_meta.json'))['checkpoint'])")
  python3 -c "from train.archive import write_weights; write_weights('$checkpoint', '$SCRATCH/$name.half.pth', half=True)"
  # The device returns files of at most 16 MiB: split the weights, `cat` them back together
  # under the checkpoint's own name in ${name}_work/ (the part names say both).
  split -b 15m -d "$SCRATCH/$name.half.pth" "$OUT/${name}_work.$(basename "$checkpoint").part"
  keep_logs "$work" "$name"
}

if [ "$TRAIN" = 1 ]; then
  IFS=, read -r -a train_configs <<< "$TRAIN_CONFIG"
  minutes=$TRAIN_MINUTES
  if [ "$minutes" = auto ]; then  # leave ~40 s for start-up and the last validation, 15 s a model to stage, INFER's 45
    reserve=$(( 40 + 15 * ${#train_configs[@]} + (INFER == 1 ? 45 : 0) ))
    minutes=$(awk -v left=$(( DEADLINE - $(elapsed) - reserve )) 'BEGIN{printf "%.1f", (left > 60 ? left : 60) / 60}')
  fi
  if [ -f .carry/weights/demo_start.mar ]; then  # START=demo in prepare_gpu_carry.sh
    start_from=(--weights .carry/weights/demo_start.mar)
  elif [ -n "$BACKBONE_WEIGHTS" ]; then
    start_from=(--backbone-weights "$BACKBONE_WEIGHTS")
  else
    stamp "no starting weights under .carry/weights: run bench/prepare_gpu_carry.sh"; exit 1
  fi
  # Several configs train side by side, each at a little over half its speed alone (H200,
  # 2026-11-28: two Lite2 runs at 0.46 and 0.52 s an iteration; Lite0 alone 0.27): together
  # slightly more iterations than one run alone, and two models from one call. 16 cores.
  workers=$(( ${#train_configs[@]} > 1 ? 12 / ${#train_configs[@]} : 8 ))
  pids=()
  for config in "${train_configs[@]}"; do
    name=$(basename "$config" .py); name=${name#tood_}
    if [ ${#train_configs[@]} = 1 ]; then
      train_one "$config" "$name"
    else
      train_one "$config" "$name" > "$RESULTS/${name}_session.log" 2>&1 &
      pids+=($!)
    fi
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  [ ${#pids[@]} = 0 ] || grep -h "gpu_session\|Time budget\|bbox_mAP_50:" "$RESULTS"/*_session.log
  save_results
fi

if [ "$X101" = 1 ]; then
  stamp "waiting for X101"
  wait "$x101_pid"
  grep "gpu_session" "$RESULTS/x101_session.log"
  save_results
fi

if [ -n "$EXPERIMENTS" ] && [ $(( DEADLINE - $(elapsed) )) -lt 60 ]; then
  stamp "EXPERIMENTS skipped: less than 60 s left before the deadline"
elif [ -n "$EXPERIMENTS" ] && [ -z "$BACKBONE_WEIGHTS" ]; then
  stamp "EXPERIMENTS skipped: no ImageNet backbone weights carried (they need START=imagenet)"
elif [ -n "$EXPERIMENTS" ]; then
  stamp "the study's comparisons $EXPERIMENTS on the $LITE backbone, $EXPERIMENT_MINUTES min per row"
  amp="--amp"; python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())" || amp=""
  schedule="--budget-minutes $EXPERIMENT_MINUTES"
  case " $EXPERIMENT_ARGS " in *" --smoke "*) schedule="";; esac  # --smoke sets its own iterations
  timeout $(( DEADLINE - $(elapsed) )) python3 -m train.experiments --data "$DATA" \
    --out "$RESULTS/experiments" --runs "$EXPERIMENTS" --backbone efficientnet-$LITE $EXPERIMENT_ARGS \
    --train-args "--batch-size 16 --workers 8 $amp --fast $schedule --backbone-weights $BACKBONE_WEIGHTS" \
    || stamp "experiments did not finish"
  # Only the tables, logs and metrics come back: checkpoints and derived data sets stay behind.
  find "$RESULTS/experiments" -name "*.pth" -delete
  rm -rf "$RESULTS/experiments/data"
  save_results
fi

left=$(( DEADLINE - $(elapsed) ))
if [ "$INFER" = 1 ] && [ "$left" -ge 30 ]; then
  stamp "inference speed on the GPU: slices batched against one at a time (${left}s left)"
  MODEL=model_store/trouble.mar  # the recipe moves it aside for the call: then only TRAIN's model
  first=$(basename "${TRAIN_CONFIG%%,*}" .py); first_work=$SCRATCH/work/${first#tood_}  # TRAIN's first model
  if [ -f "$first_work/run_meta.json" ]; then
    python3 -c "
from pathlib import Path
from train.archive import stage_model_dir
stage_model_dir(Path('$first_work'), Path('$SCRATCH/model'))" && MODEL=$SCRATCH/model
  fi
  timeout "$left" python3 -m bench.inference_speed --model "$MODEL" --device cuda --no-server \
    --batch-sizes 1,4,8,16 --repeats 3 --large-repeats 2 --out "$RESULTS/inference_speed_gpu.json" \
    || stamp "inference benchmark did not finish"
elif [ "$INFER" = 1 ]; then
  stamp "INFER skipped: ${left}s left before the deadline"
fi

save_results
stamp "done"
ls -la "$OUT"
