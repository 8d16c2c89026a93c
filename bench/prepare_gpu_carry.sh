#!/usr/bin/env bash
# Lay out .carry/ for one call on the lent GPU machine (64 MiB in all, tree included):
# the prebuilt wheels, the starting weights, the whole ACNE04 train split and VALID_IMAGES valid
# images in the project's COCO layout. See bench/gpu_session.sh.
# START=imagenet (the default): the float16 ImageNet weights of BACKBONE, lite0 (the default, 9.5 MB)
#   or lite2 (12.4 MB); gpu_session.sh then trains the config of that backbone.
# START=demo: the demo model's weights, to train it on (DEMO_MAR, default model_store/trouble.mar,
#   else /tmp/trouble.mar where the recipe moves it) in a copy with its weights as bfloat16,
#   LZMA-compressed (15 MB; float16 in the .mar takes 19.7 and does not fit beside the train split),
#   which train.train takes as --weights like any .mar. bfloat16 keeps 3 significant
#   digits, the precision bfloat16 AMP trains in: enough for a starting point. No SAHI wheels then
#   (below).
set -euo pipefail
SHARED=${SHARED:-../shared}
START=${START:-imagenet}
case "$START" in imagenet|demo) ;; *) echo "START must be imagenet or demo, not '$START'" >&2; exit 1;; esac
if [ "$START" = demo ] && [ -n "${BACKBONE:-}" ]; then
  echo "BACKBONE goes with START=imagenet: START=demo starts from the demo model's own (Lite0) weights" >&2; exit 1
fi
BACKBONE=${BACKBONE:-lite0}
case "$BACKBONE" in lite0|lite2) ;; *) echo "BACKBONE must be lite0 or lite2, not '$BACKBONE'" >&2; exit 1;; esac
VALID_IMAGES=${VALID_IMAGES:-40}
TRAIN_IMAGES=${TRAIN_IMAGES:-0}   # 0: all of them
rm -rf .carry && mkdir -p .carry/weights
cp -r "$SHARED/device/wheels" .carry/wheels
# trouble.images reads a JPEG's damage through simplejpeg, which the shared wheels lack: one for the
# machine's Python 3.12 (that of the shared wheels), at requirements.txt's pin (0.4 MB).
.venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    -d .carry/wheels "$(grep '^simplejpeg==' requirements.txt)" 2>&1 | grep -v "^WARNING: Location" || true
ls .carry/wheels/simplejpeg-*-cp312-*.whl > /dev/null  # without it the call would fail at its first import
if [ "$START" = demo ]; then
  # Training alone needs no SAHI (the model is archived here afterwards): its wheels make room for
  # the weights. X101's evaluation, INFER and EXPERIMENTS need them: run those from START=imagenet.
  # shapely stays: mmdet imports it (H100, 2026-11-27: without it nothing ran).
  rm .carry/wheels/{sahi,pybboxes,fire}-*.whl
  DEMO_MAR=${DEMO_MAR:-$([ -f model_store/trouble.mar ] && echo model_store/trouble.mar || echo /tmp/trouble.mar)}
  .venv/bin/python - "$DEMO_MAR" <<'PY'
# A copy of the .mar with what train.train reads from it (weights, config, settings) and the
# weights in bfloat16, LZMA-compressed: `train.train --weights demo_start.mar` starts from it.
import io, sys, zipfile
import torch
source, copy = sys.argv[1], ".carry/weights/demo_start.mar"
with zipfile.ZipFile(source) as archive:
    state = torch.load(io.BytesIO(archive.read("model.pth")), map_location="cpu")["state_dict"]
    with zipfile.ZipFile(copy, "w", compression=zipfile.ZIP_LZMA) as out:
        for name in ("config.py", "model-config.yaml"):
            out.writestr(name, archive.read(name))
        buffer = io.BytesIO()
        torch.save({"state_dict": {k: v.to(torch.bfloat16) if v.is_floating_point() else v
                                   for k, v in state.items()}}, buffer)
        out.writestr("model.pth", buffer.getvalue())
print("the demo model from", source, "with bfloat16 weights:", copy)
PY
else
  cp "$SHARED"/device/weights/efficientnet-"$BACKBONE"-*-fp16.pth .carry/weights/
fi
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
# The data as one file, in case the device tool counts disk blocks per file: it counts more than
# the bytes (a call of 63.8 MiB in bytes, 1,044 files, was refused as over 64 MiB), and how is not
# documented. gpu_session.sh unpacks it.
tar -cf .carry/data.tar -C .carry data && rm -rf .carry/data
# The call copies the working tree too (tracked and untracked files git does not ignore), counted
# here as a tar of it would be (a 512-byte header and padding per file: 64.6 MiB for that refused
# call; 62.4 for the one that went through).
tree=$( { git ls-files -z --cached --others --exclude-standard | xargs -0 -r tar -cf - 2>/dev/null || true; } | wc -c)
carry=$(tar -cf - .carry | wc -c)
awk -v t="$tree" -v c="$carry" 'BEGIN{printf ".carry %.1f MiB + working tree %.1f MiB = %.1f MiB of 64\n", c/1048576, t/1048576, (t+c)/1048576}'
if [ $(( tree + carry )) -gt $(( 63 * 1048576 )) ]; then  # a MiB of margin: the tool's count is not known exactly
  echo "over 63 MiB (64 less a MiB of margin): move model_store/trouble.mar aside for the call (mv model_store/trouble.mar /tmp/;" \
       "git checkout model_store/trouble.mar afterwards), or lower TRAIN_IMAGES / VALID_IMAGES" >&2
  exit 1
fi
