"""Training hooks: TOOD's epoch information in iteration-based training, and a time budget."""
import math
import time

from mmengine.hooks import Hook
from mmdet.registry import HOOKS


@HOOKS.register_module()
class EpochFromIterHook(Hook):
    """Publish a virtual epoch (iterations / iterations per epoch) in the message hub.

    TOOD switches from its initial ATSS assigner to the task-aligned one after
    `train_cfg.initial_epoch` epochs and reads the epoch from the message hub; with an
    iteration-based loop the runner never advances it, so this hook does.
    """

    priority = "NORMAL"

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        iters_per_epoch = max(1, len(runner.train_dataloader))
        runner.message_hub.update_info("epoch", runner.iter // iters_per_epoch)


@HOOKS.register_module()
class TimeBudgetHook(Hook):
    """Train for a wall-clock budget: cosine learning-rate decay over the budget, then stop.

    The learning rate follows warmup then a cosine over elapsed time instead of iterations,
    so the whole schedule fits the budget however fast the machine is. When the budget is spent
    the current iteration becomes the last one, so the usual end-of-training checkpoint and
    validation still run.
    """

    priority = "VERY_HIGH"  # before CheckpointHook, which saves on the last iteration

    def __init__(self, budget_minutes: float, warmup_iters: int = 100, min_lr_ratio: float = 0.05):
        if budget_minutes <= 0:
            raise ValueError(f"budget_minutes must be > 0, got {budget_minutes}")
        self.budget_s = budget_minutes * 60.0
        self.warmup_iters = warmup_iters
        self.min_lr_ratio = min_lr_ratio
        self.start = None
        self.base_lrs = None

    def before_train(self, runner):
        # On resume the elapsed budget restarts; the schedule then decays over the rest.
        self.start = time.monotonic()
        self.base_lrs = [group["lr"] for group in runner.optim_wrapper.param_groups]

    def elapsed_fraction(self) -> float:
        return (time.monotonic() - self.start) / self.budget_s

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        fraction = min(1.0, self.elapsed_fraction())
        factor = self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * fraction))
        if runner.iter < self.warmup_iters:
            factor *= (runner.iter + 1) / self.warmup_iters
        for group, base_lr in zip(runner.optim_wrapper.param_groups, self.base_lrs):
            group["lr"] = base_lr * factor

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.elapsed_fraction() >= 1.0 and runner.iter + 1 < runner.train_loop.max_iters:
            runner.logger.info(f"Time budget of {self.budget_s / 60:.1f} min spent after "
                               f"{runner.iter + 1} iterations: stopping.")
            runner.train_loop._max_iters = runner.iter + 1
