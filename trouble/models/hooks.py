"""Training hooks: TOOD's epoch information in iteration-based training, a time budget, and a
stop when the loss is no longer a number."""
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
    so the whole schedule fits the budget however fast the machine is. The warm-up ends after
    `warmup_iters` iterations or `warmup_fraction` of the budget, whichever comes first (on a CPU
    at 25 s an iteration, 100 iterations would take 42 minutes, longer than many budgets). When
    the budget is spent the current iteration becomes the last one, so the usual end-of-training
    checkpoint and validation still run. Until then the loop's iteration count is re-estimated from
    the pace so far, so that mmengine's progress line ("[120/480]", eta) reads the budget, not the
    loop's upper bound of 10 million iterations.

    Each checkpoint records the minutes spent and the base learning rates. A resumed run
    (`continue_run`) goes on from there: one stopped at 40 of 60 minutes trains 20 more, on the same
    cosine (a larger budget on resume stretches the cosine over the new total). The time between
    the stop and the resume is not counted. (train.train refuses to resume a run that has spent its
    budget, before it touches the work dir.)
    """

    priority = "VERY_HIGH"  # before CheckpointHook, which saves on the last iteration

    def __init__(self, budget_minutes: float, warmup_iters: int = 100, warmup_fraction: float = 0.1,
                 min_lr_ratio: float = 0.05, continue_run: bool = False):
        if budget_minutes <= 0:
            raise ValueError(f"budget_minutes must be > 0, got {budget_minutes}")
        self.budget_s = budget_minutes * 60.0
        self.warmup_iters = warmup_iters
        self.warmup_fraction = warmup_fraction
        self.min_lr_ratio = min_lr_ratio
        self.continue_run = continue_run
        self.spent_before_s = 0.0    # spent by the run before this resume (from its checkpoint)
        self.base_lrs = None         # from the checkpoint on resume: its optimizer holds decayed ones
        # Set when training starts (before_train):
        self.start = None            # time.monotonic() then
        self.start_iter = 0          # the iteration it started from (a resumed run's is not 0)
        self.max_iters_bound = None  # the loop's own upper bound on iterations

    def after_load_checkpoint(self, runner, checkpoint):
        record = checkpoint.get("meta", {}).get("time_budget")
        if not self.continue_run:
            return  # weights to start from (--weights): a new run with its own budget
        if record is None:
            runner.logger.warning("The checkpoint records no time budget spent (a run trained for iterations, "
                                  "or saved before budgets were recorded): the budget starts afresh.")
            return
        self.spent_before_s = record["spent_s"]
        self.base_lrs = record["base_lrs"]

    def before_train(self, runner):
        if self.spent_before_s:
            runner.logger.info(f"Time budget: {self.spent_before_s / 60:.2f} of {self.budget_s / 60:g} min spent "
                               f"before this resume; training on for the rest.")
        self.start = time.monotonic()
        self.start_iter = runner.iter
        self.max_iters_bound = runner.train_loop.max_iters
        if self.base_lrs is None:
            self.base_lrs = [group["lr"] for group in runner.optim_wrapper.param_groups]

    def spent_s(self) -> float:
        return self.spent_before_s + time.monotonic() - self.start

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        fraction = min(1.0, self.spent_s() / self.budget_s)
        factor = self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * fraction))
        warmed_up = max((runner.iter + 1) / self.warmup_iters, fraction / self.warmup_fraction)
        factor *= min(1.0, warmed_up)
        for group, base_lr in zip(runner.optim_wrapper.param_groups, self.base_lrs):
            group["lr"] = base_lr * factor

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        done = runner.iter + 1
        if self.spent_s() >= self.budget_s:
            if done < runner.train_loop.max_iters:
                runner.logger.info(f"Time budget of {self.budget_s / 60:g} min spent after "
                                   f"{done} iterations: stopping.")
                runner.train_loop._max_iters = done
            return
        # At least one more iteration while the budget lasts, so the estimate never ends training.
        seconds_per_iter = (time.monotonic() - self.start) / (done - self.start_iter)  # this session's pace
        still_to_do = 1 + math.ceil((self.budget_s - self.spent_s()) / seconds_per_iter)
        runner.train_loop._max_iters = min(self.max_iters_bound, done + still_to_do)

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint.setdefault("meta", {})["time_budget"] = {"spent_s": self.spent_s(), "base_lrs": self.base_lrs}


class LossNotFinite(RuntimeError):
    """Training diverged: train.train reports it as an error instead of training on NaN."""

    def __init__(self, runner, what: str):
        super().__init__(f"training diverged at iteration {runner.iter + 1}: {what}. Try a lower --lr or a "
                         f"longer warm-up (--iters sets a 10% warm-up), or --amp bfloat16 if float16 overflows; "
                         f"checkpoints so far are in {runner.work_dir}")


@HOOKS.register_module()
class StopOnNonFiniteLossHook(Hook):
    """Stop training once the loss has been NaN or infinite for `patience` iterations in a row.

    mmengine trains on regardless, and under AMP the loss scaler skips every step, so a run whose
    forward pass overflows would spend its whole budget on NaN (seen on an H200). One bad batch is
    tolerated; a run of them ends training with a message naming the loss terms.
    """

    priority = "LOW"

    def __init__(self, patience: int = 5):
        self.patience = patience
        self.in_a_row = 0

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        losses = {name: float(value.detach() if hasattr(value, "detach") else value)
                  for name, value in (outputs or {}).items() if name.startswith("loss")}
        bad = {name: value for name, value in losses.items() if not math.isfinite(value)}
        self.in_a_row = self.in_a_row + 1 if bad else 0
        if self.in_a_row >= self.patience:
            terms = ", ".join(f"{name}={value}" for name, value in bad.items())
            raise LossNotFinite(runner, f"the loss was not finite for {self.in_a_row} iterations in a row ({terms})")
