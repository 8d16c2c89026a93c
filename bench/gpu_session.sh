#!/usr/bin/env bash
# One call on the lent GPU machine (see ../shared/device/README.md and README "Training on a GPU").
# It trains the demo model (TOOD + ImageNet-pretrained EfficientNet-Lite0) on the ACNE04 train
# split for a time budget, then runs the training-speed benchmark, and leaves everything under
# $OUT: logs, metrics, and the float16 weights split into parts under 16 MiB.
#
# Prepared here by `bash bench/prepare_gpu_carry.sh` (wheels, weights, data under .carry/), run with
#   run(command="bash bench/gpu_session.sh", carry=[".carry"])
# Knobs: TRAIN_MINUTES (default 5.5), TRAIN (0 skips training), BENCH (0 skips the benchmark).
set -u
OUT=${OUT:-/tmp/out}
TRAIN_MINUTES=${TRAIN_MINUTES:-5.5}
TRAIN=${TRAIN:-1}
BENCH=${BENCH:-1}
mkdir -p "$OUT"
exec > >(tee "$OUT/session.log") 2>&1
start=$(date +%s)
stamp() { echo "[gpu_session +$(( $(date +%s) - start ))s] $*"; }

stamp "installing wheels"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, mmcv, mmdet, mmcv.ops; print('torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'cuda', torch.cuda.is_available())" || exit 1

WORK=/tmp/work/lite0
train_lite0() {  # $@: extra flags
  python3 -m train.train train/configs/tood_efficientnet-lite0_fpn_acne04.py \
    --data .carry/data/acne04 --work-dir "$WORK" --budget-minutes "$TRAIN_MINUTES" \
    --batch-size 16 --workers 8 --val-interval 300 --fast \
    --backbone-weights .carry/weights/efficientnet-lite0-57934424-fp16.pth \
    --no-eval --no-archive "$@"
}
if [ "$TRAIN" = 1 ]; then
stamp "training TOOD + EfficientNet-Lite0 for $TRAIN_MINUTES min with AMP"
if ! train_lite0 --amp; then
  stamp "AMP run failed; training again in float32"
  rm -rf "$WORK"
  train_lite0 || stamp "float32 run failed too"
fi

if [ -f "$WORK/run_meta.json" ]; then
  stamp "staging the float16 model"
  python3 - <<'EOF'
from pathlib import Path
from train.archive import stage_model_dir
stage_model_dir(Path("/tmp/work/lite0"), Path("/tmp/model"), half=True)
EOF
  # The device returns files of at most 16 MiB: split the weights, `cat` them back together.
  split -b 15m -d /tmp/model/model.pth "$OUT/model.pth.part"
  cp /tmp/model/config.py "$OUT/config.py"
  cp /tmp/model/model-config.yaml "$OUT/model-config.yaml"
  cp "$WORK/run_meta.json" "$OUT/run_meta.json"
  # mmengine's scalars (loss, lr, validation mAP over time) and the text log
  find "$WORK" -name scalars.json -exec cp {} "$OUT/train_scalars.json" \;
  find "$WORK" -name "*.log" -exec cp {} "$OUT/train.log" \;
fi
fi

if [ "$BENCH" = 1 ]; then
  stamp "training-speed benchmark"
  timeout 150 python3 -m bench.train_speed --config train/configs/tood_x101-64x4d_fpn_acne04.py \
    --data .carry/data/acne04 --batch-size 16 --iters 30 --warmup 8 --out "$OUT/train_speed.json" \
    || stamp "benchmark did not finish"
fi
stamp "done"
ls -la "$OUT"
