#!/usr/bin/env bash
# Lay out .carry/ for one call on the lent GPU machine (64 MiB in all, tree included):
# the prebuilt wheels, the float16 EfficientNet-Lite0 ImageNet weights, the whole ACNE04 train
# split and VALID_IMAGES valid images in the project's COCO layout. See bench/gpu_session.sh.
set -euo pipefail
SHARED=${SHARED:-../shared}
VALID_IMAGES=${VALID_IMAGES:-40}
TRAIN_IMAGES=${TRAIN_IMAGES:-0}   # 0: all of them
rm -rf .carry && mkdir -p .carry/weights
cp -r "$SHARED/device/wheels" .carry/wheels
cp "$SHARED/device/weights/efficientnet-lite0-57934424-fp16.pth" .carry/weights/
.venv/bin/python -m train.data import --format voc --src "$SHARED/data/acne04" --out /tmp/acne04_full \
    --single-class acne --grade-from-filename 'levle(\d)_' --symlink --overwrite > /dev/null
.venv/bin/python - "$VALID_IMAGES" "$TRAIN_IMAGES" <<'PY'
import json, shutil, sys
from pathlib import Path
src, dst = Path("/tmp/acne04_full"), Path(".carry/data/acne04")
limits = {"valid": int(sys.argv[1]), "train": int(sys.argv[2])}
for split in ("train", "valid"):
    coco = json.loads((src / split / "annotations.json").read_text())
    keep = limits[split]
    if keep:  # every k-th image, so that all grades are present
        step = max(1, len(coco["images"]) // keep)
        coco["images"] = coco["images"][::step][:keep]
        ids = {im["id"] for im in coco["images"]}
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
    (dst / split).mkdir(parents=True, exist_ok=True)
    for im in coco["images"]:
        shutil.copy(src / split / im["file_name"], dst / split / im["file_name"])
    (dst / split / "annotations.json").write_text(json.dumps(coco))
    print(split, len(coco["images"]), "images", len(coco["annotations"]), "boxes")
PY
# The call copies the working tree too (tracked and untracked files git does not ignore).
tree=$( { git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null || true; } |
       awk '$2=="total"{s+=$1} END{print s+0}')  # du skips files deleted from the tree
carry=$(du -sb .carry | cut -f1)
awk -v t="$tree" -v c="$carry" 'BEGIN{printf ".carry %.1f MiB + working tree %.1f MiB = %.1f MiB of 64\n", c/1048576, t/1048576, (t+c)/1048576}'
if [ $(( tree + carry )) -gt $(( 64 * 1048576 )) ]; then
  echo "over 64 MiB: move model_store/trouble.mar aside for the call (mv model_store/trouble.mar /tmp/;" \
       "git checkout model_store/trouble.mar afterwards), or lower TRAIN_IMAGES / VALID_IMAGES" >&2
  exit 1
fi
