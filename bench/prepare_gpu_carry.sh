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
du -sh .carry; du -sb .carry | awk '{printf "%.1f MiB of 64\n", $1/1048576}'
