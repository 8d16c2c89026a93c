r"""Inference speed on this machine, every comparison measured side by side in one run.

    python -m bench.inference_speed --model model_store/trouble.mar --out bench/results/inference_speed.json

(a) 640x640 ACNE04 photos: the inference core in this process (TroubleDetector.predict on the
    photo's bytes) against the same photos POSTed to a TorchServe of our own serving the same .mar,
    one right after the other; ms and the server's overhead.
(b) A 4032x3024 photo (12 MP, tiled from ACNE04 photos, so real skin at the lesion scale of the
    data) sliced at the model's slice size (sliced even where the model's default is off):
    one slice per forward pass (as SAHI runs a model by default) against 4 and 8 (`--batch-sizes`);
    ms, speed-up, and whether the detections are the same.
(c) ms for one 640x640 photo in process, and the model's own share (timings_ms.inference).
(d) The 12 MP photo end to end through TorchServe, sliced at the .mar's `slicing.batch_size`,
    against in process.
(e) Memory format: the 640x640 photos in process with the model in channels_last (the inference
    core's default) against contiguous (NCHW) weights, alternately.

`--device cuda --no-server` measures (b) and (c) alone on a GPU machine (no Java there):

    python -m bench.inference_speed --model model_store/trouble.mar --device cuda --no-server \
        --batch-sizes 1,4,8,16 --out inference_speed_gpu.json

Ratios are medians of ratios taken within a round (the two numbers compared were measured a few
seconds apart), so that other programs on a shared machine, whose load comes and goes, bias them
less than they bias the times themselves; the load average is recorded before and after.
Traffic goes to 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import requests
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.arguments import (at_least, existing_folder, existing_path, list_of,  # noqa: E402
                             output_file, parse_checked, run_main, torch_device, write_results)
from trouble.images import PHOTO_SUFFIXES, BadInput  # noqa: E402
from trouble.inference import TroubleDetector  # noqa: E402

DEFAULT_PHOTOS = REPO / "tests" / "fixtures" / "acne04"


def twelve_megapixel_photo(paths: list[Path], width: int = 4032, height: int = 3024) -> bytes:
    """A 4032x3024 JPEG tiled from the given photos (every other tile mirrored)."""
    try:
        tiles = [Image.open(p).convert("RGB") for p in paths]
    except OSError as error:  # PIL's UnidentifiedImageError is one
        raise BadInput("not_an_image", f"a photo in --photos cannot be read: {error}") from None
    tile_width, tile_height = tiles[0].size
    canvas = Image.new("RGB", (width, height))
    columns, rows = -(-width // tile_width), -(-height // tile_height)
    for row in range(rows):
        for column in range(columns):
            tile = tiles[(row * columns + column) % len(tiles)]
            if (row + column) % 2:
                tile = tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            canvas.paste(tile, (column * tile_width, row * tile_height))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def timed(call):
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000.0, result


def stats(values: list[float]) -> dict:
    return {"median_ms": round(statistics.median(values), 1), "min_ms": round(min(values), 1),
            "max_ms": round(max(values), 1), "n": len(values)}


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the pairwise ratios."""
    return round(statistics.median(n / d for n, d in zip(numerators, denominators)), 3)


def same_detections(reference: dict, other: dict, box_tolerance: float = 0.5, score_tolerance: float = 1e-3) -> dict:
    """The same detections, in any order: types equal, boxes within box_tolerance px, scores within
    score_tolerance."""
    def ordered(response):
        return sorted(response["detections"], key=lambda d: (d["type"], -d["score"], d["box"]))

    first, second = ordered(reference), ordered(other)
    result = {"count": len(first), "other_count": len(second), "same": False, "max_box_diff": None,
              "max_score_diff": None}
    if len(first) != len(second) or [d["type"] for d in first] != [d["type"] for d in second]:
        return result
    if first:
        result["max_box_diff"] = round(float(np.abs(np.array([d["box"] for d in first]) -
                                                     np.array([d["box"] for d in second])).max()), 3)
        result["max_score_diff"] = round(float(np.abs(np.array([d["score"] for d in first]) -
                                                       np.array([d["score"] for d in second])).max()), 5)
    result["same"] = not first or (result["max_box_diff"] <= box_tolerance and
                                   result["max_score_diff"] <= score_tolerance)
    return result


def post(session, url: str, photo: bytes, headers: dict | None = None) -> dict:
    reply = session.post(url, data=photo, headers=headers or {}, timeout=600)
    if reply.status_code != 200:
        raise RuntimeError(f"TorchServe answered {reply.status_code}: {reply.text[:300]}")
    return reply.json()


def measure_small_photos(detector, session, url: str | None, photos: list[bytes], repeats: int) -> dict:
    """(a) and (c): each 640x640 photo in process, then through TorchServe (unless url is None)."""
    for photo in photos:  # warm-up, not counted
        detector.predict(photo)
        if url:
            post(session, url, photo)
    local_ms, server_ms, model_ms, handler_ms, same = [], [], [], [], []
    for _ in range(repeats):
        for photo in photos:
            elapsed, local = timed(lambda: detector.predict(photo))
            local_ms.append(elapsed)
            model_ms.append(local["timings_ms"]["inference"])
            if url:
                elapsed, served = timed(lambda: post(session, url, photo))
                server_ms.append(elapsed)
                handler_ms.append(served["timings_ms"]["total"])
                same.append(same_detections(local, served)["same"])
    if not url:
        return {"in_process": stats(local_ms), "model_only_median_ms": round(statistics.median(model_ms), 1)}
    return {"in_process": stats(local_ms), "torchserve": stats(server_ms),
            "model_only_median_ms": round(statistics.median(model_ms), 1),
            "handler_total_median_ms": round(statistics.median(handler_ms), 1),
            "overhead_pct": round((median_ratio(server_ms, local_ms) - 1) * 100, 1),
            "overhead_ms_median": round(statistics.median(s - l for s, l in zip(server_ms, local_ms)), 1),
            "same_detections": all(same)}


def measure_memory_format(detector, photos: list[bytes], repeats: int) -> dict:
    """(e): each photo with the model's weights contiguous, then channels_last, alternately."""
    import torch

    model = detector.sahi_model.model
    contiguous_ms, channels_last_ms, same = [], [], []
    try:
        for _ in range(repeats):
            for photo in photos:
                model.to(memory_format=torch.contiguous_format)
                elapsed, contiguous = timed(lambda: detector.predict(photo))
                contiguous_ms.append(elapsed)
                model.to(memory_format=torch.channels_last)
                elapsed, channels_last = timed(lambda: detector.predict(photo))
                channels_last_ms.append(elapsed)
                same.append(same_detections(contiguous, channels_last)["same"])
    finally:
        model.to(memory_format=torch.channels_last)
    return {"contiguous": stats(contiguous_ms), "channels_last": stats(channels_last_ms),
            "speedup": median_ratio(contiguous_ms, channels_last_ms), "same_detections": all(same)}


def predict_at_batch_size(detector, photo: bytes, batch_size: int) -> dict:
    """One sliced prediction with `batch_size` slices per forward pass (sliced whatever the model's
    default); the detector's own setting is kept."""
    slicing = detector.settings.slicing
    detector.settings.slicing = replace(slicing, batch_size=batch_size, enabled=True)
    try:
        return detector.predict(photo)
    finally:
        detector.settings.slicing = slicing


def measure_large_photo(detector, session, url: str | None, photo: bytes, batch_sizes: list[int],
                        repeats: int) -> dict:
    """(b) and (d): the 12 MP photo in process at each batch size, then through TorchServe (unless
    url is None), per round."""
    slicing = detector.settings.slicing
    # Warm-up without slicing (one cheap pass): decoding and the large arrays.
    detector.predict(photo, sliced=False)
    if url:
        post(session, url, photo, {"X-Trouble-Sliced": "false"})
    if detector.device.startswith("cuda"):
        # A GPU's first pass at a new batch shape pays for cuDNN's algorithm search and memory
        # growth (H100: round 1 took 3.2 s at 4 per pass against 0.9 s in round 2): one untimed
        # sliced pass per batch size first.
        for batch_size in batch_sizes:
            predict_at_batch_size(detector, photo, batch_size)
    rounds, responses = [], {}
    for round_number in range(repeats):
        times = {}
        for batch_size in batch_sizes:
            times[batch_size], responses[batch_size] = timed(lambda: predict_at_batch_size(detector, photo, batch_size))
        if url:
            times["torchserve"], responses["torchserve"] = timed(
                lambda: post(session, url, photo, {"X-Trouble-Sliced": "true"}))
        rounds.append(times)
        print(f"[speed]   round {round_number + 1}: " + ", ".join(f"{k}: {v:.0f} ms" for k, v in times.items()),
              flush=True)

    reference = batch_sizes[0]
    by_batch = []
    for batch_size in batch_sizes:
        by_batch.append({"batch_size": batch_size, **stats([r[batch_size] for r in rounds]),
                         "speedup": median_ratio([r[reference] for r in rounds], [r[batch_size] for r in rounds]),
                         "vs_reference": same_detections(responses[reference], responses[batch_size])})
    result = {"by_batch_size": by_batch, "rounds_ms": rounds, "slices": responses[reference]["settings"]["slices"]}
    if not url:
        return result
    result.update({"torchserve": stats([r["torchserve"] for r in rounds]),
                   "torchserve_timings_ms": responses["torchserve"]["timings_ms"]})
    if slicing.batch_size in batch_sizes:  # the server runs the .mar's own batch size
        result["torchserve_overhead_pct"] = round(
            (median_ratio([r["torchserve"] for r in rounds], [r[slicing.batch_size] for r in rounds]) - 1) * 100, 1)
        result["torchserve_vs_in_process"] = same_detections(responses[slicing.batch_size], responses["torchserve"])
    return result


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(0) if device.startswith("cuda") else "CPU"


def photo_size(path: Path):
    """(width, height) of a photo file, or None where PIL cannot read it without a plugin (HEIC)."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError:
        return None


def faster_or_slower(speedup: float) -> str:
    """A speed ratio in words: "1.76x slower" rather than "0.569x faster"."""
    return f"{speedup}x faster" if speedup >= 1 else f"{round(1 / speedup, 2)}x slower"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inference_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=existing_path,
                        help="a .mar (or, with --no-server, a model folder)")
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS), type=existing_folder,
                        help="a folder of 640x640 JPEG photos")
    parser.add_argument("--repeats", type=at_least(1), default=5, help="rounds over the 640x640 photos")
    parser.add_argument("--large-repeats", type=at_least(1), default=3, help="rounds over the 12 MP photo")
    parser.add_argument("--batch-sizes", default=[1, 4, 8], type=list_of(at_least(1)),
                        help="slices per forward pass to compare; the first is the reference")
    parser.add_argument("--device", default="cpu", type=torch_device, help="cpu or cuda (the in-process measurements)")
    parser.add_argument("--no-server", action="store_true", help="in process only: no TorchServe (a GPU machine)")
    parser.add_argument("--out", required=True, type=output_file, help="JSON file for the results")
    args = parse_checked(parser, argv)

    import torch

    model = Path(args.model).resolve()
    if not (model.is_file() or (args.no_server and (model / "model-config.yaml").is_file())):
        # it exists (checked by its argument type): a folder, which only --no-server can load
        print(f"error: {model} is {'no model folder (no model-config.yaml)' if args.no_server else 'a folder'}: "
              f"give a .mar{' or a model folder' if args.no_server else ' (or --no-server for a model folder)'}",
              file=sys.stderr)
        return 2
    photo_paths = sorted(p for p in Path(args.photos).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photo_paths:
        print(f"error: no photos ({', '.join(PHOTO_SUFFIXES)}) in {args.photos}", file=sys.stderr)
        return 2
    photos = [p.read_bytes() for p in photo_paths]
    # The table names the photos' size as it is (the issue's figure is for 640x640 photos).
    sizes = {photo_size(path) for path in photo_paths}
    size_label = "{}x{}".format(*next(iter(sizes))) if len(sizes) == 1 and None not in sizes else "mixed-size"
    large_photo = twelve_megapixel_photo(photo_paths)
    batch_sizes = args.batch_sizes
    load_before = os.getloadavg()

    detector = TroubleDetector.from_path(model, device=args.device)
    slicing = detector.settings.slicing

    def measure(url):
        session = requests.Session()
        print(f"[speed] {len(photos)} photos {size_label} x {args.repeats} rounds, in process"
              f"{' and through TorchServe' if url else ''}", flush=True)
        small = measure_small_photos(detector, session, url, photos, args.repeats)
        small["memory_format"] = measure_memory_format(detector, photos, args.repeats)
        print(f"[speed] 4032x3024 photo: slices of {slicing.slice_size} px + a whole-image pass, "
              f"batch sizes {batch_sizes}{', then TorchServe' if url else ''}; {args.large_repeats} rounds", flush=True)
        large = measure_large_photo(detector, session, url, large_photo, batch_sizes, args.large_repeats)
        large.update({"width": 4032, "height": 3024, "jpeg_bytes": len(large_photo),
                      "slicing": vars(slicing)})
        return small, large

    if args.no_server:
        small, large = measure(None)
    else:
        from tests.conftest import torchserve_serving, wait_for_model  # needs pytest: not on the GPU machine

        with torchserve_serving(model, Path(tempfile.mkdtemp(prefix="trouble-speed-"))) as server:
            wait_for_model(server)
            small, large = measure(f"{server['inference']}/predictions/trouble")

    weights = model if model.is_file() else model / "model.pth"  # a .mar, or a model folder's weights
    result = {"model": str(args.model), "model_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
              "photos": [p.name for p in photo_paths], "photo_size": size_label, "cpus": os.cpu_count(), "device": device_name(args.device),
              "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
              "load_average_before": [round(v, 2) for v in load_before],
              "load_average_after": [round(v, 2) for v in os.getloadavg()],
              "photo_640": small, "photo_12mp": large}
    print(f"\nInference speed: {args.model}, {result['device']}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads; "
          f"load average {result['load_average_before'][0]} before, {result['load_average_after'][0]} after")
    print("| measurement | median ms (min) | compared with | median ratio |\n|---|---|---|---|")
    print(f"| {size_label} photo, in process | {small['in_process']['median_ms']} ({small['in_process']['min_ms']}) | "
          f"model alone: {small['model_only_median_ms']} ms | |")
    memory = small["memory_format"]
    print(f"| {size_label} photo, in process, channels_last | {memory['channels_last']['median_ms']} "
          f"({memory['channels_last']['min_ms']}) | contiguous: {memory['contiguous']['median_ms']} ms | "
          f"{faster_or_slower(memory['speedup'])}, detections "
          f"{'the same' if memory['same_detections'] else 'DIFFERENT'} |")
    if "torchserve" in small:
        print(f"| {size_label} photo, through TorchServe | {small['torchserve']['median_ms']} "
              f"({small['torchserve']['min_ms']}) | in process | {small['overhead_pct']:+.1f}% "
              f"({small['overhead_ms_median']:+.0f} ms) |")
    for row in large["by_batch_size"]:
        print(f"| 12 MP photo, {large['slices']} slices + whole image, {row['batch_size']} per pass | {row['median_ms']} "
              f"({row['min_ms']}) | {batch_sizes[0]} per pass | {faster_or_slower(row['speedup'])}, detections "
              f"{'the same' if row['vs_reference']['same'] else 'DIFFERENT'} |")
    if "torchserve_overhead_pct" in large:
        print(f"| 12 MP photo end to end, through TorchServe | {large['torchserve']['median_ms']} "
              f"({large['torchserve']['min_ms']}) | in process, {slicing.batch_size} per pass | "
              f"{large['torchserve_overhead_pct']:+.1f}% |")
    write_results(args.out, result)
    return 0


if __name__ == "__main__":
    run_main(main)
