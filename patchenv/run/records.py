"""What a run records: the per-epoch rows (`EPOCH_FIELDS`) and the final `summary`
(`SUMMARY_FIELDS`), the same field names everywhere; the budget; the runner's own state
(sums of the steps, history), saved beside each checkpoint."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from patchenv.arrays import to_numpy
from patchenv.agentvit_exploration import exploration_mask
from patchenv.run.protocol import RunnableEnv
from patchenv.selector import PatchSelector

# One row per evaluation (epoch ends, and the budget's end when it falls inside an epoch).
# Times, tokens, FLOPs and steps are cumulative over the run; the rest are this epoch's
# means. Per epoch the ViT is evaluated on the validation split (``protocol="val"``, when
# the env has one: ``val_*``) or on the test split (``protocol="paper"``: ``test_*``);
# the other split's fields are None there.
EPOCH_FIELDS = (
    "epoch", "global_step", "train_time_s", "epoch_time_s", "env_step_time_s", "agent_overhead_s",
    "train_tokens", "train_flops", "train_loss", "train_accuracy", "mean_patches_kept", "mean_reward",
    "episode_return", "diverged_steps", "val_accuracy", "val_loss", "test_accuracy", "test_loss",
)
PROTOCOLS = ("val", "paper")
# How close to its accuracy budget a run's last evaluation must be for the runner to
# evaluate it several times an epoch: a point, about what `all` gains in ten epochs near
# its plateau on Fashion-MNIST, so the extra evaluations fall where the target may be hit.
CHECK_WITHIN = 0.01
SUMMARY_FIELDS = (
    "epochs", "steps", "val_accuracy", "test_accuracy", "test_loss", "test_accuracy_masked", "test_mean_patches_kept_masked",
    "test_accuracy_random_masks", "mean_patches_kept", "mean_reward", "train_time_s", "images_per_s", "env_step_time_s", "agent_overhead_s",
    "agent_overhead_share", "train_tokens", "train_flops", "diverged_steps", "batch_size", "num_patches",
)


@dataclass
class Budget:
    """How long to train: whole ``epochs``, ``seconds`` of training wall-clock, training
    ``flops`` (forward + backward, as `info["flops"]` counts them), or several (whichever
    comes first). A seconds or FLOPs budget may end a run inside an epoch.

    ``accuracy`` (with one of the others as its cap) also ends the run once an evaluation
    reaches it: the run stops at its target, and its cost so far is its cost to target.
    Evaluations fall at epoch ends and, once one has come within `CHECK_WITHIN` of the
    target, ``checks_per_epoch`` times an epoch (outside the clock), so a run's time to
    target is not an epoch's granularity."""

    epochs: Optional[int] = None
    seconds: Optional[float] = None
    flops: Optional[int] = None
    accuracy: Optional[float] = None
    checks_per_epoch: int = 4

    def __post_init__(self):
        if self.epochs is None and self.seconds is None and self.flops is None:
            raise ValueError("a budget needs epochs, seconds or flops")
        if self.flops is not None and (isinstance(self.flops, bool) or not isinstance(self.flops, int)
                                       or self.flops <= 0):
            raise ValueError(f"flops must be a positive integer, got {self.flops!r}")
        if self.flops is not None and self.epochs is None and self.seconds is None:
            raise ValueError("a FLOPs budget needs epochs or seconds beside it, as its cap")
        if self.epochs is not None and not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"seconds must be positive, got {self.seconds!r}")
        if self.accuracy is not None and not (isinstance(self.accuracy, (int, float))
                                              and not isinstance(self.accuracy, bool) and 0 < self.accuracy <= 1):
            raise ValueError(f"accuracy must be a fraction in (0, 1], got {self.accuracy!r}")
        if not (isinstance(self.checks_per_epoch, int) and not isinstance(self.checks_per_epoch, bool)
                and self.checks_per_epoch >= 1):
            raise ValueError(f"checks_per_epoch must be a positive integer, got {self.checks_per_epoch!r}")

    def spent(self, time_s: float, flops: int) -> bool:
        """Whether a run that has trained `time_s` seconds and `flops` FLOPs has used up the
        seconds or the FLOPs budget (the epochs are counted by the runner)."""
        return ((self.seconds is not None and time_s >= self.seconds)
                or (self.flops is not None and flops >= self.flops))

    def reached(self, accuracy: Optional[float]) -> bool:
        """Whether an evaluation of `accuracy` (None: none yet) reached the accuracy budget
        (to 1e-12, as the sweep's time to target counts it)."""
        return self.accuracy is not None and accuracy is not None and accuracy >= self.accuracy - 1e-12

    def checking(self, accuracy: Optional[float]) -> bool:
        """Whether a run whose best evaluation so far gave `accuracy` is near enough its
        target to be evaluated ``checks_per_epoch`` times an epoch (the best, not the last:
        one evaluation that dips does not stop the checks)."""
        return (self.accuracy is not None and self.checks_per_epoch > 1 and accuracy is not None
                and accuracy >= self.accuracy - CHECK_WITHIN)

    def record(self) -> dict:
        """The budget as a run records it (``flops`` and ``accuracy`` only when set, so
        records written before they existed still match)."""
        return {"epochs": self.epochs, "seconds": self.seconds, **({"flops": self.flops} if self.flops else {}),
                **({"accuracy": self.accuracy, "checks_per_epoch": self.checks_per_epoch}
                   if self.accuracy is not None else {})}


@dataclass
class Sums:
    """Per-step sums over a stretch of steps (one epoch, or the whole run)."""

    steps: int = 0
    reward: float = 0.0
    loss: float = 0.0
    accuracy: float = 0.0
    kept: float = 0.0
    tokens: int = 0
    flops: int = 0
    diverged: int = 0
    episode_returns: list = field(default_factory=list)  # episodes that ended in the stretch

    def add(self, reward: float, info: dict, episode_return: Optional[float]) -> None:
        # An env.step of several training steps (action_repeat) counts as them all, each
        # with the last one's loss, accuracy and patches kept (its info is the last's).
        n = int(info.get("steps", 1))
        self.steps += n
        self.reward += reward
        self.loss += n * info["loss"] if math.isfinite(info["loss"]) else 0.0
        self.accuracy += n * info["accuracy"]
        self.kept += n * info["kept"]
        self.tokens += int(info["tokens"])
        self.flops += int(info.get("flops", 0))
        self.diverged += bool(info.get("diverged", False))
        if episode_return is not None:
            self.episode_returns.append(episode_return)

    def mean(self, key: str) -> Optional[float]:
        return getattr(self, key) / self.steps if self.steps else None


@dataclass
class RunState:
    """The runner's own progress; saved in progress.json beside each checkpoint."""

    seed: int
    time_s: float = 0.0  # training wall-clock so far
    overhead_s: float = 0.0  # the agent's overhead_time_s so far
    episode_return: float = 0.0  # running return of the episode in progress
    epoch: Sums = field(default_factory=Sums)  # the unfinished epoch
    total: Sums = field(default_factory=Sums)  # the whole run
    history: list = field(default_factory=list)  # EPOCH_FIELDS rows
    keep_counts: Optional[np.ndarray] = None  # per patch position: images trained with it kept
    keep_images: int = 0  # images the counts cover
    best_accuracy: Optional[float] = None  # the best evaluation's (epoch ends and checks), what an accuracy budget reads
    checks: list = field(default_factory=list)  # CHECK_FIELDS rows: the evaluations inside epochs

    @classmethod
    def from_dict(cls, d: dict) -> "RunState":
        counts = None if d.get("keep_counts") is None else np.asarray(d["keep_counts"], dtype=np.int64)
        return cls(**{**d, "epoch": Sums(**d["epoch"]), "total": Sums(**d["total"]), "keep_counts": counts})


# One row per evaluation inside an epoch (an accuracy budget's checks near its target);
# cumulative like EPOCH_FIELDS'.
CHECK_FIELDS = ("epoch", "global_step", "train_time_s", "train_flops", "val_accuracy", "val_loss", "test_accuracy",
                "test_loss")


def check_record(u: RunnableEnv, state: RunState, spe: int, protocol: str, ev: dict, time_s: float) -> dict:
    """A check's row, from its evaluation `ev` (of `eval_split`) after `time_s` seconds of training."""
    split = eval_split(u, protocol)
    return {"epoch": round(u.global_step / spe, 4), "global_step": u.global_step, "train_time_s": time_s,
            "train_flops": state.total.flops,
            "val_accuracy": ev["accuracy"] if split == "val" else None,
            "val_loss": ev["loss"] if split == "val" else None,
            "test_accuracy": ev["accuracy"] if split == "test" else None,
            "test_loss": ev["loss"] if split == "test" else None}


def partial(state: RunState) -> dict:
    s = state.epoch
    return {"steps": s.steps, "train_time_s": state.time_s, "train_loss": s.mean("loss"),
            "mean_patches_kept": s.mean("kept"), "mean_reward": s.mean("reward")}


def eval_split(u: RunnableEnv, protocol: str) -> str:
    """The split a run evaluates after every epoch, decided here only: the validation split
    under ``protocol="val"`` when the env has one (``val_fraction > 0``), else the test
    split. Recorded in ``meta["eval_split"]``."""
    return "val" if protocol == "val" and u.config.val_fraction > 0 else "test"


def epoch_record(u: RunnableEnv, state: RunState, spe: int, protocol: str, ev: Optional[dict] = None) -> dict:
    """The row of an evaluation at an epoch end or the budget's end; `ev` is the
    evaluation when it was just made (a check that reached the target), else one is made."""
    split = eval_split(u, protocol)
    ev = ev if ev is not None else u.evaluate(split)
    s = state.epoch
    previous = state.history[-1]["train_time_s"] if state.history else 0.0
    return {
        "epoch": u.global_step // spe if u.global_step % spe == 0 else round(u.global_step / spe, 4),
        "global_step": u.global_step,
        "train_time_s": state.time_s,
        "epoch_time_s": state.time_s - previous,
        "env_step_time_s": u.train_time_s,
        "agent_overhead_s": state.overhead_s,
        "train_tokens": state.total.tokens,
        "train_flops": state.total.flops,
        "train_loss": s.mean("loss"),
        "train_accuracy": s.mean("accuracy"),
        "mean_patches_kept": s.mean("kept"),
        "mean_reward": s.mean("reward"),
        "episode_return": float(np.mean(s.episode_returns)) if s.episode_returns else None,
        "diverged_steps": s.diverged,
        "val_accuracy": ev["accuracy"] if split == "val" else None,
        "val_loss": ev["loss"] if split == "val" else None,
        "test_accuracy": ev["accuracy"] if split == "test" else None,
        "test_loss": ev["loss"] if split == "test" else None,
    }


def summary(u: RunnableEnv, agent: PatchSelector, state: RunState, masked_eval: bool) -> dict:
    final = state.history[-1] if state.history else {}
    if final.get("test_accuracy") is None:  # the per-epoch curve used the validation split
        test = u.evaluate("test")
        final = {**final, "test_accuracy": test["accuracy"], "test_loss": test["loss"]}
    masked, random_masked, kept_at_test = None, None, []
    if masked_eval:
        def masks(obs):
            mask = agent.act(obs)
            mask = to_numpy(mask)
            kept_at_test.append(float(mask.sum(axis=-1).mean()))
            return mask

        masked = u.evaluate("test", masks=masks)
        random_masked = u.evaluate("test", masks=random_masks(u, state.seed))
    t, steps = state.time_s, state.total.steps
    return {
        "epochs": final.get("epoch", 0),
        "steps": steps,
        "val_accuracy": final.get("val_accuracy"),
        "test_accuracy": final.get("test_accuracy"),
        "test_loss": final.get("test_loss"),
        "test_accuracy_masked": None if masked is None else masked["accuracy"],
        "test_mean_patches_kept_masked": float(np.mean(kept_at_test)) if kept_at_test else None,
        "test_accuracy_random_masks": None if random_masked is None else random_masked["accuracy"],
        "mean_patches_kept": state.total.mean("kept"),
        "mean_reward": state.total.mean("reward"),
        "train_time_s": t,
        "images_per_s": steps * u.batch_size / t if t > 0 else None,
        "env_step_time_s": u.train_time_s,
        "agent_overhead_s": state.overhead_s,
        "agent_overhead_share": state.overhead_s / t if t > 0 else None,
        "train_tokens": state.total.tokens,
        "train_flops": state.total.flops,
        "diverged_steps": state.total.diverged,
        "batch_size": u.batch_size,
        "num_patches": u.num_patches,
        # per patch position (row-major over the patch grid): the share of training images
        # that kept it
        "patch_keep_frequency": (state.keep_counts / state.keep_images).tolist() if state.keep_images else None,
    }


def random_masks(u: RunnableEnv, seed: int) -> Callable:
    """``evaluate``'s masks for the notebook's random-mask column: one exploration-style
    mask per evaluation batch (shared by its images, as the notebook's are), from a
    generator seeded with `seed`, so a run's number is reproducible. A ``selection="count"``
    env gets the mask's count (its patches are then drawn per image by the env)."""
    rng = np.random.default_rng(seed)

    def masks(_obs):
        mask = exploration_mask(rng, u.num_patches)
        if u.selection == "count":  # a count env takes the mask's count; the env draws the positions
            return int(mask.sum()) - 1
        return mask if u.selection == "batch" else np.broadcast_to(mask, (u.batch_size, u.num_patches))

    return masks
