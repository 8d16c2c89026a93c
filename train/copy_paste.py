r"""Lesion copy-paste, offline: a new data set whose train split has extra images with pasted lesions.

    python -m train.copy_paste --data data/acne04 --out data/acne04_copy_paste --per-image 1 \
        --onto all --grid reports/copy_paste.png

Lesions are cut, with some skin around them, from the annotated train images; each target image
(`--onto negatives`: those without boxes, `--onto all`: every train image) gets `--per-image`
new copies, each with `--lesions` pasted lesions (flipped, rotated and resized at random, matched
to the local skin colour, blended through a feathered edge, only on skin, never on another box).
The copies join the train split beside the originals, their new boxes beside the old ones. A copy
that finds no free skin to paste on is not made (the report counts them).
Other splits are linked unchanged: patches come from train only, so nothing leaks into valid.

The same pasting runs inside training as the `LesionCopyPaste` pipeline transform
(trouble/models/transforms.py; variant train/configs/variants/tood_x101_copy_paste.py).
`--grid` draws generated images with the original boxes in green and the pasted ones in magenta,
and zoomed crops of pasted lesions, under a legend of the colours, for a look by eye.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from train import file_in_place_of_folder
from train.data import DataError, files_not_imported, is_inside, swap_in
from train.data import read_split as read_checked_split
from trouble.images import upright_rgb
from trouble.models.transforms import PatchBank, paste_lesions
from trouble.skin import skin_mask
from trouble.severity import grade_from_count

ORIGINAL_COLOUR, PASTED_COLOUR = (0, 200, 0), (255, 0, 255)


class CopyPasteError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""


def read_split(data_dir: Path, split: str) -> dict:
    """train.data.read_split: checked, its images present (a missing one ended in a traceback after
    part of the data set was written, or left a dangling symlink)."""
    try:
        return read_checked_split(data_dir, split)
    except DataError as error:
        raise CopyPasteError(str(error)) from None


def load_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:  # upright: the frame the boxes are in (see train.data)
            return np.asarray(upright_rgb(image)).copy()
    except OSError as error:
        raise CopyPasteError(f"cannot read image {path}: {error}") from None


def parse_range(text: str) -> tuple[int, int]:
    """'5' or '3-10' -> (low, high), both included."""
    try:
        low, _, high = text.partition("-")
        low, high = int(low), int(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or LOW-HIGH, got {text!r}") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"expected 0 < LOW <= HIGH, got {text!r}")
    return low, high


def link_or_copy(source: Path, target: Path, symlink: bool):
    target.parent.mkdir(parents=True, exist_ok=True)  # a file_name with a folder in it ("sub/x.jpg")
    if target.exists() or target.is_symlink():
        target.unlink()
    if symlink:
        os.symlink(source.resolve(), target)
    else:
        shutil.copy2(source, target)


def build_bank(data_dir: Path, coco: dict, bank_size: int, rng) -> PatchBank:
    """A sample of lesion patches from every annotated train image."""
    boxes_by_image, labels_by_image = {}, {}
    for ann in coco["annotations"]:
        boxes_by_image.setdefault(ann["image_id"], []).append(ann["bbox"])
        labels_by_image.setdefault(ann["image_id"], []).append(ann["category_id"])
    bank = PatchBank(bank_size, rng)
    for image in coco["images"]:
        if image["id"] in boxes_by_image:
            rgb = load_rgb(data_dir / "train" / image["file_name"])
            bank.add_image(rgb, boxes_by_image[image["id"]], labels_by_image[image["id"]], skin_mask(rgb, strict=True))
    return bank


def generate(data_dir: Path, out_dir: Path, per_image: int, onto: str, lesions=(5, 15), seed: int = 0,
             bank_size: int = 2000, symlink: bool = True, overwrite: bool = False) -> dict:
    """Write the copy-paste data set; return a summary, including every generated image's boxes."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if is_inside(out_dir, data_dir) or is_inside(data_dir, out_dir):
        raise CopyPasteError(f"--out {out_dir} and --data {data_dir} overlap: choose an --out outside the data "
                             f"(the source data set is never changed)")
    if message := file_in_place_of_folder("--out", out_dir):
        raise CopyPasteError(message)
    # Everything is read and checked first, and the output is written into a hidden folder that
    # replaces an earlier one only once complete: a bad --data, or an image that cannot be read
    # halfway, deletes nothing.
    train = read_split(data_dir, "train")
    rng = np.random.default_rng(seed)
    bank = build_bank(data_dir, train, bank_size, rng)
    if not len(bank):
        raise CopyPasteError(f"{data_dir / 'train'} has no lesion to cut: none of at least 3 px with skin colour "
                             f"around it and no other lesion next to it (a grey-scale data set has no skin colour)")
    annotated = {ann["image_id"] for ann in train["annotations"]}
    targets = [im for im in train["images"] if onto == "all" or im["id"] not in annotated]
    if not targets:
        raise CopyPasteError(f"{data_dir / 'train'} has no image without annotations to paste onto: "
                             f"use --onto all")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / "copy_paste_report.json").is_file():
            raise CopyPasteError(f"{out_dir} exists and is not an earlier copy-paste output: choose another --out")
        if not overwrite:
            raise CopyPasteError(f"{out_dir} holds an earlier copy-paste output: pass --overwrite or another --out")
        if added := files_not_written(out_dir):  # --overwrite replaces the folder whole: they would go
            raise CopyPasteError(f"{out_dir} holds {len(added)} file(s) that the earlier output did not write "
                                 f"({', '.join(added[:5])}): move them out first, --overwrite replaces the whole "
                                 f"folder")
    written = out_dir.parent / f".{out_dir.name}.writing"
    shutil.rmtree(written, ignore_errors=True)  # left by a run killed outright
    try:
        result = write_copy_paste(written, data_dir, train, targets, bank, per_image, lesions, rng, symlink)
        if not result["generated"]:  # a data set of the originals only, and a grid of nothing
            raise CopyPasteError(f"no copy got a pasted lesion: none of the {len(targets)} target images has free "
                                 f"skin to paste on (skin colour, away from its own lesions, large enough)")
        summary = {"source": str(data_dir), "onto": onto, "per_image": per_image, "lesions_per_copy": list(lesions),
                   "seed": seed, "patches_in_bank": len(bank), "lesions_seen": bank.seen,
                   "target_images": len(targets), **result["counts"]}
        (written / "copy_paste_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(written, ignore_errors=True)
        raise
    swap_in(written, out_dir)
    return {**summary, "generated": result["generated"]}


def files_not_written(out_dir: Path) -> list:
    """Files in an earlier copy-paste output that it did not write (a user's notes, a photo added)."""
    added = []
    for path in sorted(out_dir.iterdir()):
        if path.is_dir() and (path / "annotations.json").is_file():
            added += [f"{path.name}/{name}" for name in files_not_imported(path)]
        elif path.name != "copy_paste_report.json":
            added.append(path.name)
    return added


def write_copy_paste(out_dir: Path, data_dir: Path, train: dict, targets: list, bank, per_image: int, lesions,
                     rng, symlink: bool) -> dict:
    """Write the originals, the pasted copies and the other splits into out_dir; → the generated
    images and the counts for the report."""
    # The originals, unchanged.
    out_train = out_dir / "train"
    out_train.mkdir(parents=True)
    for image in train["images"]:
        link_or_copy(data_dir / "train" / image["file_name"], out_train / image["file_name"], symlink)
    images, annotations = [dict(im) for im in train["images"]], [dict(a) for a in train["annotations"]]
    next_image_id = max((im["id"] for im in images), default=0) + 1
    next_ann_id = max((a["id"] for a in annotations), default=0) + 1
    anns_by_image = {}
    for ann in train["annotations"]:
        anns_by_image.setdefault(ann["image_id"], []).append(ann)

    generated, copies_without_room = [], 0
    taken_names = {im["file_name"] for im in images}
    for image in targets:
        source_rgb = load_rgb(data_dir / "train" / image["file_name"])
        skin = skin_mask(source_rgb, strict=True)  # skin colour only: not on eyes, brows, lips
        old_anns = anns_by_image.get(image["id"], [])
        old_boxes = [ann["bbox"] for ann in old_anns]
        for copy in range(per_image):
            rgb = source_rgb.copy()
            count = int(rng.integers(lesions[0], lesions[1] + 1))
            new_boxes, new_labels = paste_lesions(rgb, old_boxes, bank, count, skin, rng)
            if not new_boxes:  # no free skin: an unchanged copy would only weigh this photo twice
                copies_without_room += 1
                continue
            stem = Path(image["file_name"]).stem
            name = f"{stem}_cp{copy}.jpg"
            while name in taken_names:
                name = f"{stem}_cp{copy}_{next_image_id}.jpg"
            taken_names.add(name)
            Image.fromarray(rgb).save(out_train / name, quality=95)
            record = {key: value for key, value in image.items() if key not in ("id", "file_name")}
            record.update(id=next_image_id, file_name=name, width=rgb.shape[1], height=rgb.shape[0],
                          copy_paste={"source": image["file_name"], "pasted": len(new_boxes)})
            if "grade" in image:  # the lesion count changed: so may the grade
                record["grade"] = grade_from_count(len(old_boxes) + len(new_boxes))
            images.append(record)
            for ann in old_anns:
                annotations.append(dict(ann, id=next_ann_id, image_id=next_image_id))
                next_ann_id += 1
            for box, label in zip(new_boxes, new_labels):
                x, y = round(box[0], 2), round(box[1], 2)
                w, h = min(round(box[2], 2), rgb.shape[1] - x), min(round(box[3], 2), rgb.shape[0] - y)
                annotations.append({"id": next_ann_id, "image_id": next_image_id, "category_id": int(label),
                                    "bbox": [x, y, w, h], "area": round(w * h, 2), "iscrowd": 0})
                next_ann_id += 1
            generated.append({"file_name": name, "source": image["file_name"], "original_boxes": old_boxes,
                              "pasted_boxes": new_boxes, "pasted_labels": new_labels})
            next_image_id += 1
    (out_train / "annotations.json").write_text(json.dumps(dict(train, images=images, annotations=annotations)))

    # Every other split, unchanged.
    for split_dir in sorted(p for p in data_dir.iterdir()
                            if p.is_dir() and p.name != "train" and not p.name.startswith(".")):  # not a half import
        if not (split_dir / "annotations.json").is_file():
            continue
        coco = read_split(data_dir, split_dir.name)
        (out_dir / split_dir.name).mkdir()
        for image in coco["images"]:
            link_or_copy(split_dir / image["file_name"], out_dir / split_dir.name / image["file_name"], symlink)
        shutil.copy2(split_dir / "annotations.json", out_dir / split_dir.name / "annotations.json")

    counts = {"generated_images": len(generated), "pasted_boxes": sum(len(g["pasted_boxes"]) for g in generated),
              "copies_not_made_no_free_skin": copies_without_room,
              "train_images": len(images), "train_boxes": len(annotations)}
    return {"counts": counts, "generated": generated}


LEGEND_HEIGHT = 32
GRID_MARK = "trouble: python -m train.copy_paste --grid"  # in each grid PNG's text


def draw_legend(draw: ImageDraw.ImageDraw):
    """What the colours mean, at the grid's top: the grid is looked at without this code beside it."""
    font = ImageFont.load_default(size=16)
    x = 8
    for colour, text in ((ORIGINAL_COLOUR, "boxes of the original photo"),
                         (PASTED_COLOUR, "pasted lesions (to the right: some of them, zoomed)")):
        draw.rectangle([x, 8, x + 16, 24], outline=colour, width=3)
        draw.text((x + 24, 7), text, fill=(0, 0, 0), font=font)
        x += 24 + round(draw.textlength(text, font=font)) + 24


def draw_grid(out_dir: Path, generated: list, path: Path, samples: int = 6, tile: int = 320, zoom: int = 320):
    """One row per generated image: the image with its boxes, then up to 4 zoomed pasted lesions."""
    chosen = [g for g in generated if g["pasted_boxes"]][:samples]
    if not chosen:
        raise CopyPasteError("no generated image has a pasted lesion: nothing to draw")
    crops_per_row = 4
    width = tile + crops_per_row * zoom
    grid = Image.new("RGB", (width, LEGEND_HEIGHT + max(tile, zoom) * len(chosen)), (255, 255, 255))
    draw_legend(ImageDraw.Draw(grid))
    for row, item in enumerate(chosen):
        top_of_row = LEGEND_HEIGHT + row * max(tile, zoom)
        with Image.open(out_dir / "train" / item["file_name"]) as opened:
            picture = opened.convert("RGB")
        scale = tile / max(picture.size)
        full = picture.resize((round(picture.width * scale), round(picture.height * scale)))
        draw = ImageDraw.Draw(full)
        for boxes, colour in ((item["original_boxes"], ORIGINAL_COLOUR), (item["pasted_boxes"], PASTED_COLOUR)):
            for x, y, w, h in boxes:
                draw.rectangle([x * scale, y * scale, (x + w) * scale, (y + h) * scale], outline=colour)
        grid.paste(full, (0, top_of_row))
        for k, (x, y, w, h) in enumerate(item["pasted_boxes"][:crops_per_row]):
            side = round(max(w, h) * 3)  # the lesion and the skin around it
            left, top = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
            crop = picture.crop((left, top, left + side, top + side)).resize((zoom, zoom), Image.NEAREST)
            factor = zoom / side
            ImageDraw.Draw(crop).rectangle([(x - left) * factor, (y - top) * factor,
                                            (x + w - left) * factor, (y + h - top) * factor],
                                           outline=PASTED_COLOUR, width=2)
            grid.paste(crop, (tile + k * zoom, top_of_row))
    path.parent.mkdir(parents=True, exist_ok=True)
    marked = PngImagePlugin.PngInfo()
    marked.add_text("Software", GRID_MARK)  # what --overwrite checks before replacing a PNG
    grid.save(path, pnginfo=marked)


def drawn_by_us(path: Path) -> bool:
    """Whether the PNG at path is a grid this command drew (and so --overwrite may replace it)."""
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.text.get("Software") == GRID_MARK
    except (OSError, ValueError):  # not an image, or not one PIL reads
        return False


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m train.copy_paste", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="source data set in the project's COCO layout")
    parser.add_argument("--out", required=True, help="where the new data set is written")
    parser.add_argument("--per-image", type=int, default=1, help="generated copies per target image (default 1)")
    parser.add_argument("--onto", choices=("negatives", "all"), default="negatives",
                        help="paste onto images without boxes (default) or onto every train image")
    parser.add_argument("--lesions", type=parse_range, default=(5, 15),
                        help="lesions pasted per copy: N or LOW-HIGH (default 5-15)")
    parser.add_argument("--bank-size", type=int, default=2000, help="lesion patches kept to paste from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copy", action="store_true", help="copy the original images instead of symlinking them")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--grid", help="PNG of generated images and zoomed pasted lesions, for a visual check")
    args = parser.parse_args(argv)
    for flag, value, least in (("--per-image", args.per_image, 1), ("--bank-size", args.bank_size, 1),
                               ("--seed", args.seed, 0)):
        if value < least:
            parser.error(f"{flag} must be at least {least}, got {value}")
    if args.grid and Path(args.grid).suffix.lower() != ".png":
        parser.error(f"--grid {args.grid}: give a .png file name")
    if args.grid and (message := file_in_place_of_folder("--grid's folder", Path(args.grid).parent)):
        parser.error(message)  # found only after the data set was written, otherwise
    if args.grid and Path(args.grid).is_dir():
        parser.error(f"--grid {args.grid} is a folder: give a .png file name")
    if args.grid and is_inside(Path(args.grid), Path(args.data)):  # it had replaced a photo of the data set
        parser.error(f"--grid {args.grid} lies inside the data set {args.data}: write it outside")
    if args.grid and Path(args.grid).exists() and not args.overwrite:
        parser.error(f"--grid {args.grid} exists: pass --overwrite to replace it, or give another name")
    if args.grid and Path(args.grid).exists() and not drawn_by_us(Path(args.grid)):  # --overwrite or not
        parser.error(f"--grid {args.grid} exists and is not marked as a grid this command drew: give another "
                     f"name, or move it away")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = generate(Path(args.data), Path(args.out), args.per_image, args.onto, args.lesions, args.seed,
                          args.bank_size, symlink=not args.copy, overwrite=args.overwrite)
        if args.grid:
            draw_grid(Path(args.out), result["generated"], Path(args.grid))
    except CopyPasteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the data set is swapped in whole or not at all
        print(f"interrupted: {args.out} is replaced only by a complete data set, so it holds the earlier one or "
              f"the new one whole", file=sys.stderr)
        return 130
    print(json.dumps({k: v for k, v in result.items() if k != "generated"}, indent=2))
    if args.grid:
        print(f"wrote {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
