"""The one experiment runner: train an agent in a PatchSelectionEnv for a budget.

``run_training(env, agent, out, budget=Budget(epochs=3), seed=0)`` is the whole job that
``patchenv train`` and ``compare_selectors`` (and any sweep) are thin front
ends over:

- **budget**: whole epochs, or seconds of training wall-clock (evaluation excluded);
- **evaluation** with all patches at every epoch end (and at the budget's end), optionally
  (``masked_eval``) once more at the end with the agent's own masks and with random masks
  drawn as AgentViT explores (`patchenv.masks.exploration_mask`, a fresh draw per
  evaluation batch from a generator seeded with the run's seed): the notebook's three
  columns;
- **records**: per-epoch rows with the same field names everywhere (`EPOCH_FIELDS`) and a
  final `summary` (`SUMMARY_FIELDS`), written to ``out/metrics.json`` with the ``meta``
  block (`patchenv.meta`) after every epoch;
- **checkpoints**: one format, a folder ``out/checkpoints/step-<global step>/`` holding
  the env's run (``env.pt``), the agent (``agent<save_suffix>``) and every global RNG
  (python, numpy, torch, CUDA: ``rng.pt``), committed by ``out/progress.json`` which names
  it and holds the runner's own state. Written at epoch ends and on a clean stop; a new
  checkpoint never reuses the folder of the one it replaces, and older ones are removed
  only once progress.json names the new one, so a crash at any point leaves one
  complete checkpoint;
- **resume**: ``resume=True`` continues from ``out/progress.json`` exactly (bit-identical
  on CPU for agents whose whole state is saved: see the README for which are not);
- **Ctrl-C**: the first stops after the current step and checkpoints, the second stops at
  once (`patchenv.interrupt`); both leave ``status: "interrupted"``;
- **logging**: ``log_dir`` writes per-step and per-epoch scalars (`patchenv.runlog`).

What the clock measures: the wall-clock of ``agent.train`` (the env's training steps and
the agent's own acting and learning, which is what a user pays for), the device
synchronised before it is read. The env's share is ``env_step_time_s`` (its
``train_time_s``), the agent's is ``agent_overhead_s`` (its ``overhead_time_s``).
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import random
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from patchenv.atomic import atomic_torch_save, atomic_write_json
from patchenv.interrupt import GracefulInterrupt
from patchenv.masks import exploration_mask
from patchenv.meta import meta_block
from patchenv.runlog import RunLog
from patchenv.selector import PatchSelector

FORMAT = "patchenv-run-v1"
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
SUMMARY_FIELDS = (
    "epochs", "steps", "val_accuracy", "test_accuracy", "test_loss", "test_accuracy_masked", "test_mean_patches_kept_masked",
    "test_accuracy_random_masks", "mean_patches_kept", "mean_reward", "train_time_s", "images_per_s", "env_step_time_s", "agent_overhead_s",
    "agent_overhead_share", "train_tokens", "train_flops", "diverged_steps", "batch_size", "num_patches",
)


class RunError(ValueError):
    """A run that cannot start or resume as asked (one-line message; nothing was changed)."""


class ResumeNotExactWarning(UserWarning):
    """A resumed run continues, but its numbers will differ from an uninterrupted run's
    (the agent's ``resume_caveat`` says why)."""


@dataclass
class Budget:
    """How long to train: whole ``epochs``, or ``seconds`` of training wall-clock, or both
    (whichever comes first)."""

    epochs: Optional[int] = None
    seconds: Optional[float] = None

    def __post_init__(self):
        if self.epochs is None and self.seconds is None:
            raise ValueError("a budget needs epochs, seconds or both")
        if self.epochs is not None and not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"seconds must be positive, got {self.seconds!r}")


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
        self.steps += 1
        self.reward += reward
        self.loss += info["loss"] if math.isfinite(info["loss"]) else 0.0
        self.accuracy += info["accuracy"]
        self.kept += info["kept"]
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

    @classmethod
    def from_dict(cls, d: dict) -> "RunState":
        counts = None if d.get("keep_counts") is None else np.asarray(d["keep_counts"], dtype=np.int64)
        return cls(**{**d, "epoch": Sums(**d["epoch"]), "total": Sums(**d["total"]), "keep_counts": counts})


class _Recorder(gym.Wrapper):
    """Adds each step to the runner's sums and logs, whatever loop the agent runs (its own
    Gymnasium loop or Stable-Baselines3's), without touching the env's timing."""

    def __init__(self, env: gym.Env, state: RunState, on_step: Callable[[float, dict], None]):
        super().__init__(env)
        self._state, self._on_step = state, on_step

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        s = self._state
        self._count_kept(action)
        s.episode_return += reward
        ended = s.episode_return if (terminated or truncated) else None
        if ended is not None:
            s.episode_return = 0.0
        s.epoch.add(reward, info, ended)
        s.total.add(reward, info, None)
        self._on_step(reward, info)
        return obs, reward, terminated, truncated, info

    def _count_kept(self, action) -> None:
        """Where the agent keeps patches: per position, how many images kept it (the env
        has validated the action, so it is a 0/1 mask of shape (N,) or (B, N))."""
        u, s = self.env.unwrapped, self._state
        if u.selection == "count":  # a count, not positions: the env drew them uniformly at random
            return
        mask = action.detach().cpu().numpy() if isinstance(action, torch.Tensor) else np.asarray(action)
        per_position = mask.reshape(-1, u.num_patches).astype(bool).sum(axis=0)
        if mask.ndim == 1:  # one mask for the whole batch
            per_position = per_position * u.batch_size
        if s.keep_counts is None:
            s.keep_counts = np.zeros(u.num_patches, dtype=np.int64)
        s.keep_counts += per_position  # in place: this runs every step
        s.keep_images += u.batch_size


# -- RNG states --------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """The global generators some agents draw from (SB3 samples from torch's); the env
    draws from its own."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CUDA's generators too


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- checkpoints ---------------------------------------------------------------------------------------
def has_checkpoint(out) -> bool:
    return (Path(out) / "progress.json").is_file()


def read_progress(out) -> dict:
    """progress.json of `out`, checked: it names an existing checkpoint folder of `out`,
    and holds a configuration and a runner state of the right shape."""
    path = Path(out) / "progress.json"
    if path.exists() and not path.is_file():
        raise RunError(f"{path} is a folder; it should be the run's progress file")
    if not path.is_file():
        raise RunError(f"nothing to resume in {out}: no progress.json")
    try:
        progress = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read {path}: {e}") from None
    if not isinstance(progress, dict) or progress.get("format") != FORMAT:
        raise RunError(f"{path} is not a patchenv run ({FORMAT})")
    checkpoint = progress.get("checkpoint")
    # A checkpoint of this run's own checkpoints/ folder, never a path leading elsewhere.
    if not (isinstance(checkpoint, str) and checkpoint.startswith("checkpoints/")
            and Path(checkpoint).name not in ("", ".", "..") and "/" not in checkpoint[len("checkpoints/"):]):
        raise RunError(f"{path} is damaged: 'checkpoint' should be checkpoints/<folder>, got {checkpoint!r}")
    if not (Path(out) / checkpoint).is_dir():
        raise RunError(f"{path} names checkpoint {checkpoint!r}, which is missing")
    if not isinstance(progress.get("config"), dict):
        raise RunError(f"{path} is damaged: it holds no run configuration")
    try:
        state = RunState.from_dict(progress["state"])
        if not (isinstance(state.history, list) and all(isinstance(row, dict) for row in state.history)):
            raise TypeError("its history is not a list of records")
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"{path} is damaged: its runner state cannot be read ({type(e).__name__}: {e})") from None
    return progress


def save_checkpoint(out: Path, env, agent: PatchSelector, state: RunState, config: dict) -> None:
    u = env.unwrapped
    root = out / "checkpoints"
    name = f"step-{u.global_step:09d}"
    n = 1
    while (root / name).exists():  # e.g. a Ctrl-C on an epoch's last step: never overwrite the good one
        name, n = f"step-{u.global_step:09d}.{n}", n + 1
    folder = root / name
    folder.mkdir(parents=True)
    u.save_checkpoint(folder / "env.pt")
    agent.save(folder / f"agent{agent.save_suffix}")
    atomic_torch_save(rng_state(), folder / "rng.pt")
    # The commit point: until progress.json names the new folder, the old one is the checkpoint.
    atomic_write_json(out / "progress.json", {"format": FORMAT, "checkpoint": f"checkpoints/{name}",
                                              "config": config, "state": asdict(state)})
    for old in root.iterdir():
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path, env, agent: PatchSelector) -> RunState:
    """Restore env, agent, RNGs and the runner's state; a damaged or mismatched checkpoint
    is a one-line RunError naming the folder."""
    progress = read_progress(out)
    folder = out / progress["checkpoint"]
    try:
        env.unwrapped.load_checkpoint(folder / "env.pt")
        agent.load(folder / f"agent{agent.save_suffix}")
        rngs = torch.load(folder / "rng.pt", weights_only=False)
        if not (isinstance(rngs, dict) and {"python", "numpy", "torch"} <= set(rngs)):
            raise ValueError(f"{folder / 'rng.pt'} holds no python, numpy and torch generator states")
        state = RunState.from_dict(progress["state"])
        set_rng_state(rngs)
    except Exception as e:  # unpickling a damaged file can raise almost anything
        raise RunError(f"cannot resume from {folder}: {type(e).__name__}: {e}") from None
    return state


_LOCKS: dict[str, object] = {}  # output folders this process holds, -> their open lock file


@contextlib.contextmanager
def locked(out):
    """Hold an exclusive lock on the output folder `out` (its ``.lock`` file) while a run
    writes it: a second process given the same folder gets a RunError instead of
    overwriting the first one's files. Re-entrant within a process."""
    out = Path(out)
    key = str(out.resolve())
    if key in _LOCKS:
        yield
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / ".lock", "a")
    except OSError as e:  # a read-only place, a file in the way, ...
        raise RunError(f"cannot write the output folder {out}: {e.strerror or e} ({e.filename or out})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise RunError(f"{out} is being written by another process (its .lock is held); wait for it or use "
                       f"another --out") from None
    _LOCKS[key] = handle
    try:
        yield
    finally:
        del _LOCKS[key]
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


# -- the run ---------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # note: sync so the wall clock covers queued GPU work


def _holding_the_lock(run: Callable) -> Callable:
    """The run writes its output folder only while it holds the folder's lock."""
    @functools.wraps(run)
    def wrapper(env, agent, out, **kwargs):
        with locked(out):
            return run(env, agent, out, **kwargs)

    return wrapper


@_holding_the_lock
def run_training(env: gym.Env, agent: PatchSelector, out, *, budget: Budget, seed: int = 0,
                 resume: bool = False, config: Optional[dict] = None, masked_eval: bool = False,
                 checkpoint_every: int = 1, keep_checkpoint: bool = True, log_dir=None,
                 show_progress: bool = True, desc: str = "", stop: Optional[GracefulInterrupt] = None,
                 on_epoch: Optional[Callable[[dict], None]] = None, protocol: str = "val") -> dict:
    """Train `agent` in `env` (built with ``agent.env_kwargs()``) for `budget`; returns the
    metrics written to ``out/metrics.json``: ``{"meta", "epochs", "partial", "summary"}``
    with ``meta["status"]`` ``complete`` or ``interrupted``.

    A fresh run seeds the global RNGs and ``env.reset(seed=seed)``; ``resume=True``
    continues from the checkpoint in `out` (a fresh start when there is none).
    `config` (JSON-able) goes into the meta block and progress.json. ``stop`` is a
    `GracefulInterrupt` shared by several runs (one is installed otherwise);
    ``on_epoch(record)`` is called after each evaluation. ``keep_checkpoint=False``
    removes the checkpoint once the run is complete (a sweep of many runs).
    ``protocol="val"`` evaluates the validation split at epoch ends (when the env has one,
    ``val_fraction > 0``; else the test split) and the test split once at the end;
    ``"paper"`` evaluates the test split at every epoch end, as the notebook does."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    out = Path(out)
    config = dict(config or {})
    u = env.unwrapped
    if resume and has_checkpoint(out):
        state = load_checkpoint(out, env, agent)
        resumed = True
        caveat = getattr(agent, "resume_caveat", None)
        if caveat:  # an agent that cannot continue bit for bit from this checkpoint says why
            warnings.warn(f"agent {agent.name!r} resumes {out} at step {u.global_step}, but not bit-exactly: {caveat}",
                          ResumeNotExactWarning, stacklevel=3)
    else:
        seed_everything(seed)
        env.reset(seed=seed)
        state = RunState(seed=seed)
        resumed = False
    agent.setup(env)  # validates the agent against this env before any step
    out.mkdir(parents=True, exist_ok=True)
    spe = u.steps_per_epoch
    device = u.device
    try:
        log = RunLog(log_dir, resume_from_step=u.global_step if resumed else None) if log_dir else None
    except OSError as e:
        raise RunError(f"cannot write the log folder {log_dir}: {e.strerror or e} ({e.filename or log_dir})") from None
    meta = meta_block(device, config, "running")
    meta["eval_split"] = eval_split(u, protocol)

    def write_metrics(status: str, summary: Optional[dict] = None) -> dict:
        meta.update(status=status)
        metrics = {"meta": meta, "epochs": state.history,
                   "partial": _partial(state) if state.epoch.steps else None, "summary": summary}
        atomic_write_json(out / "metrics.json", metrics)
        return metrics

    def done() -> bool:
        if budget.seconds is not None and state.time_s >= budget.seconds:
            return True
        return budget.epochs is not None and u.global_step >= budget.epochs * spe

    def on_step(reward: float, info: dict) -> None:
        if log is not None:
            log.step(info, reward, agent.stats())

    recorder = _Recorder(env, state, on_step)
    own_stop = stop is None
    stop = stop or GracefulInterrupt()
    bar_total = budget.epochs if budget.epochs is not None else round(budget.seconds, 1)
    by_epoch = budget.epochs is not None
    bar = tqdm(total=bar_total, desc=desc or "epochs", unit="epoch" if by_epoch else "s",
               leave=False, disable=not show_progress, dynamic_ncols=True,
               initial=min(u.global_step // spe if by_epoch else round(state.time_s, 1), bar_total))
    if own_stop:
        stop.__enter__()
    try:
        while not done():
            t_start = state.time_s
            steps = spe - u.global_step % spe  # to the end of this epoch

            def callback(_transition) -> bool:
                stop.count_step()
                if stop.requested:
                    return False
                # note: env.step synchronised the device (the reward needs the loss), so the clock is honest
                return budget.seconds is None or t_start + time.perf_counter() - t0 < budget.seconds

            overhead_before = agent.overhead_time_s
            epoch_before = u.global_step // spe
            _sync(device)
            t0 = time.perf_counter()
            try:
                agent.train(recorder, steps=steps, callback=callback)
            except KeyboardInterrupt:  # a second Ctrl-C inside a step: keep the last checkpoint
                return write_metrics("interrupted")
            _sync(device)
            state.time_s += time.perf_counter() - t0
            state.overhead_s += agent.overhead_time_s - overhead_before
            # An agent may overrun the steps it was asked for (SB3 rounds to whole rollouts):
            # an epoch ends when the env's step count crosses a multiple of the epoch length.
            epoch_end = u.global_step // spe > epoch_before
            if epoch_end or done():
                record = _evaluate(u, state, spe, protocol)
                state.history.append(record)
                state.epoch = Sums()
                if log is not None:
                    log.epoch(record)
                if on_epoch is not None:
                    on_epoch(record)
                acc = record["val_accuracy"] if record["val_accuracy"] is not None else record["test_accuracy"]
                bar.set_postfix(acc=f"{acc:.3f}", reward=f"{record['mean_reward']:.3f}")
                bar.update(1 if by_epoch else min(round(state.time_s, 1), bar_total) - bar.n)
            if stop.requested:
                save_checkpoint(out, env, agent, state, config)
                return write_metrics("interrupted")
            if epoch_end and ((u.global_step // spe) % max(checkpoint_every, 1) == 0 or done()):
                save_checkpoint(out, env, agent, state, config)
            write_metrics("running")
    finally:
        bar.close()
        if log is not None:
            log.close()
        if own_stop:
            stop.__exit__(None, None, None)

    summary = _summary(u, agent, state, masked_eval)
    metrics = write_metrics("complete", summary)
    if not keep_checkpoint:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        (out / "progress.json").unlink(missing_ok=True)
    return metrics


def _partial(state: RunState) -> dict:
    s = state.epoch
    return {"steps": s.steps, "train_time_s": state.time_s, "train_loss": s.mean("loss"),
            "mean_patches_kept": s.mean("kept"), "mean_reward": s.mean("reward")}


def eval_split(u, protocol: str) -> str:
    """The split a run evaluates after every epoch, decided here only: the validation split
    under ``protocol="val"`` when the env has one (``val_fraction > 0``), else the test
    split. Recorded in ``meta["eval_split"]``."""
    return "val" if protocol == "val" and u.config.val_fraction > 0 else "test"


def _evaluate(u, state: RunState, spe: int, protocol: str) -> dict:
    split = eval_split(u, protocol)
    ev = u.evaluate(split)
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


def _summary(u, agent: PatchSelector, state: RunState, masked_eval: bool) -> dict:
    final = state.history[-1] if state.history else {}
    if final.get("test_accuracy") is None:  # the per-epoch curve used the validation split
        test = u.evaluate("test")
        final = {**final, "test_accuracy": test["accuracy"], "test_loss": test["loss"]}
    masked, random_masked, kept_at_test = None, None, []
    if masked_eval:
        def masks(obs):
            mask = agent.act(obs)
            mask = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
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


def random_masks(u, seed: int) -> Callable:
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


def print_line(text: str, show_progress: bool) -> None:
    """A line that does not break the progress bars."""
    if show_progress:
        tqdm.write(text)
    else:
        print(text, flush=True)
