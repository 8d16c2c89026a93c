r"""Training throughput: the float32 baseline against the fastest setting, side by side in one run.

    python -m bench.train_speed --config train/configs/tood_x101-64x4d_fpn_acne04.py \
        --data data/acne04 --batch-size 16 --iters 30 --warmup 8 --out bench/results/train_speed.json

For each setting it builds the same model from the same seed (from scratch: speed does not
depend on the weights), trains `--iters` iterations on the real data, and reports images per
second after `--warmup` iterations, the loss of every iteration, and the share of the GPU's
peak FLOP/s reached (training FLOPs per iteration counted once with torch's FlopCounterMode).
Settings: fp32 (the baseline), amp (float16 AMP with the head's float32 parts), fast (the same
plus channels_last and cudnn benchmark), fast-bf16 (fast with bfloat16) and fast-2x-batch (fast
at twice --batch-size); a setting named twice runs twice, which shows the run-to-run noise.
On a CPU only fp32 runs (AMP needs CUDA); use the smoke config there.
Then, with --stages N, N more iterations timed stage by stage (preprocess, backbone+neck, head,
assign+loss, backward, optimizer): where the time goes that AMP does not speed up.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python bench/train_speed.py`: the repository is one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.arguments import at_least, output_file, parse_checked, run_main, write_results

# Setting -> (the --amp dtype it trains with, None: float32; whether it adds train.train's --fast:
# channels_last and cudnn benchmark; the batch size, as a multiple of --batch-size).
# "amp" tells AMP's share from channels_last's: TOOD's head is full of GroupNorm, which autocast
# keeps in float32 and which may not like channels_last. "fast-2x-batch" asks whether a bigger
# batch fills a GPU that the model keeps at about a tenth of its peak (H100, docs/FIGURES.md); its loss is
# not comparable with the others'.
SETTINGS = {"fp32": (None, False, 1), "amp": ("float16", False, 1), "fast": ("float16", True, 1),
            "fast-bf16": ("bfloat16", True, 1), "fast-2x-batch": ("float16", True, 2)}
# Dense float16/bfloat16 tensor-core peak, TFLOP/s (NVIDIA data sheets, SXM parts).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.train_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", required=True, help="data set in the project's COCO layout")
    parser.add_argument("--batch-size", type=at_least(1), default=16)
    parser.add_argument("--iters", type=at_least(1), default=30)
    parser.add_argument("--warmup", type=at_least(0), default=8, help="iterations left out of the timing")
    parser.add_argument("--workers", type=at_least(0), default=8)
    parser.add_argument("--lr-warmup", type=at_least(1), default=100,
                        help="iterations of linear lr warm-up, as in training on a time budget (then constant)")
    parser.add_argument("--settings", default="fp32,fast", help="comma list of " + ", ".join(SETTINGS))
    parser.add_argument("--stages", type=at_least(0), default=5, metavar="N",
                        help="after the timed run, N more iterations timed stage by stage (0: none)")
    parser.add_argument("--out", required=True, type=output_file, help="JSON file for the results")
    return parse_checked(parser, argv)  # an --out that is the --config would replace it


def iteration_timer():
    """An mmengine hook recording each iteration's wall time (synchronised) and loss."""
    from mmengine.hooks import Hook

    class IterationTimer(Hook):
        def __init__(self):
            self.times, self.losses, self._start = [], [], None

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            _sync()
            self._start = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            _sync()
            self.times.append(time.perf_counter() - self._start)
            self.losses.append(round(float(outputs["loss"]), 4))
            self.last_batch = data_batch  # for counting FLOPs afterwards

    return IterationTimer()

def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def training_flops(runner, batch) -> float:
    """FLOPs of one training iteration (forward and backward) on one real batch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = runner.model
    data = model.data_preprocessor(batch, True)
    with FlopCounterMode(display=False) as counter:
        losses = model(**data, mode="loss")
        loss, _ = model.parse_losses(losses)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


# The stages of one training iteration of a single-stage detector, in order (see iteration_stages).
STAGES = ("preprocess", "backbone+neck", "head", "assign+loss", "backward", "optimizer")
# The stages outside the network's forward and backward passes, which mixed precision barely touches:
# if they take a share f of an iteration, no precision setting can make it more than 1/f times faster.
OUTSIDE_NETWORK = ("preprocess", "assign+loss", "optimizer")


def iteration_stages(runner, batch, repeats: int) -> dict:
    """Median ms of each stage of a training iteration, on one real batch, the device synchronised
    between stages: where an iteration's time goes, e.g. how much of it AMP can speed up at all.

    The same calls as mmdet's SingleStageDetector.loss and mmengine's OptimWrapper.update_params,
    split so that each can be timed; the TOOD head's target assignment is in assign+loss.
    """
    import statistics

    from mmdet.models.utils import unpack_gt_instances

    model, optim_wrapper = runner.model, runner.optim_wrapper
    model.train()
    times = {stage: [] for stage in STAGES}
    for _ in range(repeats):
        _sync()
        last = time.perf_counter()

        def lap(stage):
            nonlocal last
            _sync()
            now = time.perf_counter()
            times[stage].append(1000 * (now - last))
            last = now

        with optim_wrapper.optim_context(model):  # autocast where the setting trains with AMP
            data = model.data_preprocessor(batch, True)
            lap("preprocess")
            features = model.extract_feat(data["inputs"])
            lap("backbone+neck")
            outputs = model.bbox_head(features)
            lap("head")
            gt_instances, gt_ignore, img_metas = unpack_gt_instances(data["data_samples"])
            losses = model.bbox_head.loss_by_feat(*outputs, gt_instances, img_metas, gt_ignore)
            loss, _ = model.parse_losses(losses)
            lap("assign+loss")
        optim_wrapper.backward(loss)
        lap("backward")
        optim_wrapper.step()
        optim_wrapper.zero_grad()
        lap("optimizer")
    return {stage: round(statistics.median(values), 1) for stage, values in times.items()}


def run_setting(args, setting: str) -> dict:
    """One setting's timed run, its work dir a temporary folder of its own (runs side by side, or
    by other users, never share one), removed afterwards: nothing in it is kept."""
    with tempfile.TemporaryDirectory(prefix=f"train_speed-{setting}-") as work_dir:
        return time_setting(args, setting, work_dir)


def time_setting(args, setting: str, work_dir: str) -> dict:
    import torch
    from mmengine.runner import Runner

    from train.train import build_config, parse_args as train_args, set_starting_weights

    amp_dtype, fast, batch_multiple = SETTINGS[setting]
    batch_size = args.batch_size * batch_multiple
    flags = [args.config, "--data", args.data, "--work-dir", work_dir,
             "--iters", str(args.iters), "--batch-size", str(batch_size), "--workers", str(args.workers),
             "--from-scratch"]
    if amp_dtype:
        flags += ["--amp", amp_dtype]
    if fast:
        flags += ["--fast"]
    targs = train_args(flags)
    cfg, _ = build_config(targs)
    set_starting_weights(cfg, targs)
    # The first iterations of a real run: its warm-up (train.train's --iters squeezes it into a
    # tenth of the run, 3 iterations here, which made AMP diverge where float32 survived: H100, docs/FIGURES.md).
    cfg.param_scheduler = [dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=args.lr_warmup)]
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=10**9, save_last=False)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=10)
    # mmengine keeps one visualizer and logger per name for the whole process; mmdet's config names
    # its visualizer "visualizer", so a second setting's runner got the first one's, which wrote into
    # that setting's folder, removed by then (H100: every setting after the first failed).
    cfg.experiment_name = cfg.visualizer.name = Path(work_dir).name
    runner = Runner.from_cfg(cfg)
    # mmengine only ever turns cudnn benchmark on, for the whole process: after a fast setting,
    # a later fp32 or amp would run with it too.
    torch.backends.cudnn.benchmark = bool(fast)
    if fast and torch.cuda.is_available():
        runner.model.to(memory_format=torch.channels_last)
    timer = iteration_timer()
    runner.register_hook(timer, priority="VERY_LOW")
    runner.train()
    timed = timer.times[args.warmup:]
    images_per_s = batch_size * len(timed) / sum(timed)
    nan_iterations = sum(1 for loss in timer.losses if loss != loss)
    result = {"setting": setting, "batch_size": batch_size, "images_per_s": round(images_per_s, 2),
              "nan_loss_iterations": nan_iterations, "s_per_iter": round(sum(timed) / len(timed), 4),
              "losses": timer.losses}
    if args.stages:
        try:  # like the FLOP count below, a bonus: a failure here must not lose the timing
            stages = iteration_stages(runner, timer.last_batch, args.stages)
            result["stages_ms"] = stages
            result["outside_network_share"] = round(sum(stages[s] for s in OUTSIDE_NETWORK) / sum(stages.values()), 3)
        except Exception as error:
            result["stages_error"] = f"{type(error).__name__}: {error}"
    try:
        flops = training_flops(runner, timer.last_batch)
        result["tflop_per_iter"] = round(flops / 1e12, 3)
        result["achieved_tflops"] = round(flops / result["s_per_iter"] / 1e12, 2)
    except Exception as error:  # counting is a bonus; the timing stands without it
        result["flop_count_error"] = f"{type(error).__name__}: {error}"
    return result


def main(argv=None):
    import torch

    args = parse_args(argv)
    from train.train import TrainError, classes_from_data  # TrainError: run_main prints it in one line

    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise TrainError(f"unknown setting(s) {unknown}; choose from {list(SETTINGS)}")
    if args.warmup >= args.iters:
        raise TrainError(f"--warmup {args.warmup} leaves none of the {args.iters} --iters to time")
    classes_from_data(Path(args.data))
    if not torch.cuda.is_available():
        left_out = [s for s in settings if s != "fp32"]
        settings = [s for s in settings if s == "fp32"]
        if left_out:
            print(f"note: on a CPU only fp32 runs; left out: {', '.join(left_out)} (they need CUDA)")
    if not settings:
        raise TrainError("no setting to run: on a CPU only fp32 runs (the others need CUDA)")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in device), None)
    results = []
    for setting in settings:
        torch.manual_seed(0)
        try:
            results.append(run_setting(args, setting))
        except Exception as error:  # one failing setting must not lose the others' figures
            print(f"setting {setting} failed: {type(error).__name__}: {error}")
            if not results:
                raise
            continue
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    # Speed-ups are against fp32 where it ran, else against the first setting that ran; the table says which.
    baseline = next((result for result in results if result["setting"] == "fp32"), results[0])
    print(f"\nTraining speed: {args.config}, batch {args.batch_size}, {device}, "
          f"{args.iters} iterations ({args.warmup} warm-up left out, lr warm-up {args.lr_warmup}); "
          f"speed-up against {baseline['setting']}")
    print(f"{'setting':<14} {'images/s':>9} {'speed-up':>9} {'TFLOP/s':>8} {'% peak':>7} {'NaN its':>7}  first losses")
    for result in results:
        result["speedup"] = round(result["images_per_s"] / baseline["images_per_s"], 2)
        achieved = result.get("achieved_tflops")
        result["share_of_peak"] = round(achieved / peak, 3) if achieved and peak else None
        share = f"{100 * result['share_of_peak']:.1f}" if result["share_of_peak"] else "-"
        print(f"{result['setting']:<14} {result['images_per_s']:>9.1f} {result['speedup']:>8.2f}x "
              f"{achieved or '-':>8} {share:>7} {result['nan_loss_iterations']:>7}  "
              f"{result['losses'][:5]}")
    for result in results:
        if result.get("stages_error"):
            print(f"{result['setting']}: stage timing failed: {result['stages_error']}")
    staged = [result for result in results if result.get("stages_ms")]
    if staged:
        print(f"\nWhere an iteration's time goes (median ms of {args.stages} iterations, "
              f"synchronised after each stage)")
        print(f"{'setting':<14} " + " ".join(f"{stage:>13}" for stage in STAGES) + f" {'sum':>8}  bound")
        for result in staged:
            stages, total = result["stages_ms"], sum(result["stages_ms"].values())
            print(f"{result['setting']:<14} " + " ".join(
                f"{stages[stage]:>7.1f} ({100 * stages[stage] / total:>2.0f}%)" for stage in STAGES)
                + f" {total:>8.1f}  {1 / max(result['outside_network_share'], 1e-3):.1f}x")
        print(f"bound: the most an iteration could speed up if the network's passes took no time at all "
              f"({' + '.join(OUTSIDE_NETWORK)} left)")
    report = {"config": args.config, "device": device, "batch_size": args.batch_size, "iters": args.iters,
              "warmup": args.warmup, "lr_warmup": args.lr_warmup, "peak_tflops_fp16": peak, "speedup_against": baseline["setting"], "results": results,
              "command": "python -m bench.train_speed " + " ".join(argv or __import__("sys").argv[1:])}
    write_results(args.out, report)


if __name__ == "__main__":
    run_main(main)
