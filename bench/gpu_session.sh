#!/usr/bin/env bash
# One call on the lent GPU machine (see ../shared/device/README.md and README "Training on a GPU").
# Prepared here by `bash bench/prepare_gpu_carry.sh` (wheels, weights, data under .carry/), run with
#   run(command="bash bench/gpu_session.sh", carry=[".carry"], timeout_s=600)
#
# Jobs, in this order, each switched by a variable (1 runs it, 0 skips it):
#   BENCH  training speed of TOOD X-101 at batch 16: fp32, float16 AMP and bfloat16 AMP side by side
#   TRAIN  the demo model: TOOD + ImageNet-pretrained EfficientNet-Lite0 for TRAIN_MINUTES (default 5)
#   X101   TOOD X-101 from scratch for X101_MINUTES (default 2), evaluated on the carried valid
#          images whole and sliced at 320 px (X101_CONFIG: another config, e.g. the smoke one)
#   INFER  slices batched against one at a time on a 12 MP photo, on the GPU (the model TRAIN made,
#          else model_store/trouble.mar)
# A whole call with the defaults takes about 12 minutes of the session's 15 (start included).
# INSTALL=0 skips installing the wheels: a dry run here on CPU with python3 pointing at .venv
# (TRAIN=1 falls back to float32 there: --amp needs CUDA).
# Everything comes back under $OUT as at most 5 files: session.log, results.tar.gz (logs, metrics,
# configs) and the demo model's float16 weights in parts under 16 MiB (`cat` them back together).
set -u
OUT=${OUT:-/tmp/out}
BENCH=${BENCH:-1} TRAIN=${TRAIN:-1} X101=${X101:-1} INFER=${INFER:-1} INSTALL=${INSTALL:-1}
TRAIN_MINUTES=${TRAIN_MINUTES:-5}
X101_MINUTES=${X101_MINUTES:-2}
X101_CONFIG=${X101_CONFIG:-train/configs/tood_x101-64x4d_fpn_acne04.py}
RESULTS=/tmp/results
mkdir -p "$OUT" "$RESULTS"
exec > >(tee "$OUT/session.log") 2>&1
start=$(date +%s)
stamp() { echo "[gpu_session +$(( $(date +%s) - start ))s] $*"; }

if [ "$INSTALL" = 1 ]; then
  stamp "installing wheels"
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/wheels/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || stamp "no nvidia-smi"
python3 -c "import torch, mmcv, mmdet, mmcv.ops; print('torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'cuda', torch.cuda.is_available())" || exit 1
# Evaluation and inference also need SAHI and its dependencies; say which are missing, if any.
python3 -c "import sahi.predict, pycocotools, trouble.inference" || { stamp "SAHI stack incomplete: X101 evaluation and INFER will fail"; }

if [ "$BENCH" = 1 ]; then
  stamp "training-speed benchmark: fp32, fast (float16), fast-bf16"
  timeout 300 python3 -m bench.train_speed --config train/configs/tood_x101-64x4d_fpn_acne04.py \
    --data .carry/data/acne04 --batch-size 16 --iters 40 --warmup 10 --settings fp32,fast,fast-bf16 \
    --out "$RESULTS/train_speed.json" || stamp "benchmark did not finish"
fi

train() {  # $1: work dir, then train.train's flags
  local work=$1; shift
  python3 -m train.train "$@" --data .carry/data/acne04 --work-dir "$work" \
    --batch-size 16 --workers 8 --val-interval 300 --fast --no-eval --no-archive
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

if [ "$TRAIN" = 1 ]; then
  WORK=/tmp/work/lite0
  LITE0=(train/configs/tood_efficientnet-lite0_fpn_acne04.py --budget-minutes "$TRAIN_MINUTES"
         --backbone-weights .carry/weights/efficientnet-lite0-57934424-fp16.pth)
  stamp "training TOOD + EfficientNet-Lite0 for $TRAIN_MINUTES min with AMP"
  train_amp_or_fp32 "$WORK" "${LITE0[@]}"
  if [ -f "$WORK/run_meta.json" ]; then
    stamp "staging the float16 model"
    python3 -c "
from pathlib import Path
from train.archive import stage_model_dir
stage_model_dir(Path('$WORK'), Path('/tmp/model'), half=True)"
    # The device returns files of at most 16 MiB: split the weights, `cat` them back together.
    split -b 15m -d /tmp/model/model.pth "$OUT/model.pth.part"
    cp /tmp/model/config.py "$RESULTS/demo_config.py"
    cp /tmp/model/model-config.yaml "$RESULTS/demo_model-config.yaml"
    keep_logs "$WORK" demo
  fi
fi

if [ "$X101" = 1 ]; then
  WORK=/tmp/work/x101
  stamp "training $X101_CONFIG from scratch for $X101_MINUTES min with AMP"
  train_amp_or_fp32 "$WORK" "$X101_CONFIG" --from-scratch --budget-minutes "$X101_MINUTES"
  if [ -f "$WORK/run_meta.json" ]; then
    keep_logs "$WORK" x101
    for sliced in false true; do
      stamp "evaluating X-101 on the carried valid images, sliced=$sliced"
      python3 -m train.evaluate --work-dir "$WORK" --gt .carry/data/acne04/valid/annotations.json \
        --sliced "$sliced" --slice-size 320 --out "$RESULTS/x101_eval_sliced_$sliced" || stamp "evaluation failed"
    done
  fi
fi

if [ "$INFER" = 1 ]; then
  stamp "inference speed on the GPU: slices batched against one at a time"
  MODEL=model_store/trouble.mar
  [ -f /tmp/model/model-config.yaml ] && MODEL=/tmp/model
  timeout 240 python3 -m bench.inference_speed --model "$MODEL" --device cuda --no-server \
    --batch-sizes 1,4,8,16 --repeats 3 --large-repeats 3 --out "$RESULTS/inference_speed_gpu.json" \
    || stamp "inference benchmark did not finish"
fi

tar -czf "$OUT/results.tar.gz" -C "$RESULTS" .
stamp "done"
ls -la "$OUT"
