"""What a training step of a run means to the agent: whether the episode ends, the reward
and the info. Written once, for a `TrainingRun` after its update (`Update`) and the next
observation; the single env and the population (for each of its runs) both use it."""
from __future__ import annotations

from typing import Optional

from patchenv.env.rewards import RewardFn, StepStats, checked_reward, loss_term, patch_term
from patchenv.env.training_run import TrainingRun, Update
from patchenv.model.keep import Keep

# What an env.step of several training steps (action_repeat) sums over them.
REPEAT_SUMS = ("tokens", "padding_tokens", "flops", "probe_flops")


def episode_end(run: TrainingRun, diverged: bool) -> tuple[bool, bool]:
    """(terminated, truncated): a diverged run terminates; the episode's last step truncates."""
    return diverged, (not diverged) and run.episode_step >= run.setup.episode_steps


def step_reward(run: TrainingRun, keep: Keep, done: Update, diverged: bool, *, kind: str,
                weights: tuple[float, float], reward_fn: Optional[RewardFn] = None) -> float:
    """The step's reward: `reward_fn`'s (checked), the progress reward (``kind="progress"``),
    or the paper's ``loss_weight * L(ref) / L(t) + patch_weight * patch_term`` with
    `weights` = (loss_weight, patch_weight). A failing `reward_fn` raises after the step
    was applied."""
    lt, pt, stats = _terms(run, keep, done)
    if reward_fn is not None:
        return checked_reward(reward_fn, stats, diverged, run.global_step)
    if kind == "progress":
        return float(done.progress_reward)
    loss_weight, patch_weight = weights
    return float(loss_weight * lt + patch_weight * pt)


def step_info(run: TrainingRun, keep: Keep, done: Update, diverged: bool) -> dict:
    """The step's info dict (the env's docstring lists its keys)."""
    lt, pt, _ = _terms(run, keep, done)
    info = {"loss": done.result.loss, "accuracy": done.result.accuracy, "kept": keep.kept, "tokens": keep.tokens,
            "padding_tokens": keep.padding, "epoch": done.trained_epoch, "global_step": run.global_step,
            "loss_term": lt, "patch_term": pt, "diverged": diverged,
            "flops": done.flops + done.probe_flops, "probe_flops": done.probe_flops}
    if run.setup.config.selection == "image":
        info["kept_per_image"] = keep.per_image.copy()
    return info


def _terms(run: TrainingRun, keep: Keep, done: Update) -> tuple[float, float, StepStats]:
    s = run.setup
    loss = done.result.loss
    # Until L(ref) is set (steps before loss_ref_step) a step is its own reference.
    loss_ref = run.loss_ref if run.loss_ref is not None else loss
    lt = loss_term(loss, loss_ref)
    pt = patch_term(keep.kept, s.num_patches, s.config.n_patch_desired)
    stats = StepStats(loss=loss, loss_ref=loss_ref, accuracy=done.result.accuracy, kept=keep.kept,
                      kept_per_image=keep.per_image if s.config.selection == "image" else None,
                      num_patches=s.num_patches, n_patch_desired=s.config.n_patch_desired,
                      loss_term=lt, patch_term=pt)
    return lt, pt, stats
