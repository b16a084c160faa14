"""The one experiment runner: train an agent in a PatchSelectionEnv for a budget.

``run_training(env, agent, out, budget=Budget(epochs=3), seed=0)`` is the whole job that
``patchenv train`` and ``compare_selectors`` (and any sweep) are thin front
ends over:

- **budget**: whole epochs, seconds of training wall-clock (evaluation excluded) or
  training FLOPs, whichever comes first, and optionally a target accuracy that ends the
  run once an evaluation reaches it (checked several times an epoch near it);
- **evaluation** with all patches at every epoch end (and at the budget's end), optionally
  (``masked_eval``) once more at the end with the agent's own masks and with random masks
  drawn as AgentViT explores (`patchenv.agentvit_exploration.exploration_mask`, a fresh draw per
  evaluation batch from a generator seeded with the run's seed): the notebook's three
  columns;
- **records**: per-epoch rows with the same field names everywhere (`EPOCH_FIELDS`) and a
  final `summary` (`SUMMARY_FIELDS`), written to ``out/metrics.json`` with the ``meta``
  block (`patchenv.run.meta`) after every epoch; under an accuracy budget, the
  evaluations inside epochs near its target (``checks``, `CHECK_FIELDS`);
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
  once (`patchenv.run.interrupt`); both leave ``status: "interrupted"``;
- **logging**: ``log_dir`` writes per-step and per-epoch scalars (`patchenv.run.log`);
- **one writer**: the run holds its output folder's lock (`patchenv.run.folder`) from start
  to end; ``overwrite=True`` removes earlier results there once the agent has been checked
  against the env, under that lock.

What the clock measures: the wall-clock of ``agent.train`` (the env's training steps and
the agent's own acting and learning, which is what a user pays for), the device
synchronised before it is read. The env's share is ``env_step_time_s`` (its
``train_time_s``), the agent's is ``agent_overhead_s`` (its ``overhead_time_s``).
"""
from __future__ import annotations

import contextlib
import shutil
import warnings
from pathlib import Path
from typing import Callable, Optional

import gymnasium as gym
from tqdm import tqdm

from patchenv import checked_json
from patchenv.atomic import WriteError, writing
from patchenv.run.resume_points import has_checkpoint, load_checkpoint, save_checkpoint, seed_everything
from patchenv.run.errors import ResumeNotExactWarning, RunError
from patchenv.run.interrupt import GracefulInterrupt
from patchenv.run.folder import clear_out, locked
from patchenv.run.log import RunLog
from patchenv.run.meta import meta_block
from patchenv.run.protocol import RunnableEnv
from patchenv.run.recorder import Recorder
from patchenv.run.records import (PROTOCOLS, Budget, RunState, Sums, check_record, epoch_record, eval_split, partial,
                                  summary)
from patchenv.selector import PatchSelector
from patchenv.timing import DeviceTimer


def run_training(env: gym.Env, agent: PatchSelector, out, *, budget: Budget, seed: int = 0,
                 resume: bool = False, config: Optional[dict] = None, masked_eval: bool = False,
                 checkpoint_every: int = 1, keep_checkpoint: bool = True, log_dir=None,
                 show_progress: bool = True, desc: str = "", stop: Optional[GracefulInterrupt] = None,
                 on_epoch: Optional[Callable[[dict], None]] = None, protocol: str = "val",
                 overwrite: bool = False, save_agent: bool = False, pause_at_epochs: bool = False,
                 trust_checkpoint: bool = False) -> dict:
    """Train `agent` in `env` (built with ``agent.env_kwargs()``) for `budget`; returns the
    metrics written to ``out/metrics.json``: ``{"meta", "epochs", "checks", "partial", "summary"}``
    with ``meta["status"]`` ``complete``, ``paused`` or ``interrupted``.

    A fresh run seeds the global RNGs and ``env.reset(seed=seed)``; ``resume=True``
    continues from the checkpoint in `out` (a fresh start when there is none).
    `config` (JSON-able) goes into the meta block and progress.json. ``stop`` is a
    `GracefulInterrupt` shared by several runs (one is installed otherwise);
    ``on_epoch(record)`` is called after each evaluation. ``keep_checkpoint=False``
    removes the checkpoint once the run is complete (a sweep of many runs).
    ``protocol="val"`` evaluates the validation split at epoch ends (when the env has one,
    ``val_fraction > 0``; else the test split) and the test split once at the end;
    ``"paper"`` evaluates the test split at every epoch end, as the notebook does.
    ``overwrite=True`` removes the results of an earlier run in `out` once `agent` has
    passed ``setup`` (a bad agent deletes nothing); ``save_agent=True`` writes the trained
    agent to ``out/agent<save_suffix>`` when the run completes. ``pause_at_epochs=True``: the
    epoch budget is a turn of a longer run (an interleaved sweep), so reaching it leaves
    ``status: "paused"`` (a seconds or FLOPs budget, when it ends the run, still completes it).
    The checkpoint is read without running code from its files; ``trust_checkpoint=True``
    also continues one an older patchenv wrote (read with the free unpickler)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    out = Path(out)
    with locked(out):
        return _run(env, agent, out, budget=budget, seed=seed, resume=resume, config=dict(config or {}),
                    masked_eval=masked_eval, checkpoint_every=checkpoint_every, keep_checkpoint=keep_checkpoint,
                    log_dir=log_dir, show_progress=show_progress, desc=desc, stop=stop, on_epoch=on_epoch,
                    protocol=protocol, overwrite=overwrite, save_agent=save_agent, pause_at_epochs=pause_at_epochs,
                    trust_checkpoint=trust_checkpoint)


def _run(env: gym.Env, agent: PatchSelector, out: Path, *, budget: Budget, seed: int, resume: bool, config: dict,
         masked_eval: bool, checkpoint_every: int, keep_checkpoint: bool, log_dir, show_progress: bool, desc: str,
         stop: Optional[GracefulInterrupt], on_epoch: Optional[Callable[[dict], None]], protocol: str,
         overwrite: bool, save_agent: bool, pause_at_epochs: bool, trust_checkpoint: bool) -> dict:
    """`run_training`'s work, with the folder's lock held."""
    u: RunnableEnv = env.unwrapped
    if resume and has_checkpoint(out):
        state = load_checkpoint(out, env, agent, trust_checkpoint)
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
    try:
        agent.setup(env)  # validates the agent against this env before any step; the one setup of the run
    except ValueError as e:
        raise RunError(str(e)) from None
    if overwrite:  # the agent fits the env: only now are the earlier results removed
        clear_out(out, ("metrics.json", "progress.json", "checkpoints", f"agent{agent.save_suffix}"))
    spe = u.steps_per_epoch
    device = u.device
    clock = DeviceTimer(device)  # an epoch's time, the device's queued work included
    try:
        log = RunLog(log_dir, resume_from_step=u.global_step if resumed else None) if log_dir else None
    except WriteError:
        raise
    except OSError as e:  # reading the logs back
        raise RunError(f"cannot read the log folder {log_dir}: {e.strerror or e} ({e.filename or log_dir})") from None
    meta = meta_block(device, config, "running")
    meta["eval_split"] = eval_split(u, protocol)

    def write_metrics(status: str, final: Optional[dict] = None) -> dict:
        meta.update(status=status)
        if status == "interrupted":  # the front ends exit with 128 + its number (130 Ctrl-C, 143 SIGTERM)
            meta["exit_status"] = stop.exit_status
        metrics = {"meta": meta, "epochs": state.history, "checks": state.checks,
                   "partial": partial(state) if state.epoch.steps else None, "summary": final}
        checked_json.write(out / "metrics.json", metrics)
        return metrics

    def ended_by_budget() -> bool:
        """The seconds, FLOPs or accuracy budget is used up: the run is over, whatever turn it is."""
        return budget.spent(state.time_s, state.total.flops) or budget.reached(state.best_accuracy)

    def done() -> bool:
        return ended_by_budget() or budget.epochs is not None and u.global_step >= budget.epochs * spe

    k = budget.checks_per_epoch
    check_points = sorted({round(j * spe / k) for j in range(1, k)} - {0})  # inside an epoch

    def checks_passed(step: int) -> int:
        """Check points (round(j * spe / checks_per_epoch) into an epoch, j = 1, 2, ...; epoch
        ends apart) at or before training step `step` of the run."""
        return (step // spe) * len(check_points) + sum(c <= step % spe for c in check_points)

    def on_step(reward: float, info: dict) -> None:
        if log is not None:
            log.step(info, reward, agent.stats())

    recorder = Recorder(env, state, on_step)
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
        checked_upto = checks_passed(u.global_step)
        while not done():
            t_start = state.time_s
            # env steps to the end of this epoch (one env step is action_repeat training steps)
            steps = -(-(spe - u.global_step % spe) // getattr(u, "action_repeat", 1))
            excluded = 0.0  # seconds of this turn's checks, off the training clock
            last_check = None  # (global step, evaluation) of this turn's latest check

            def callback(_transition) -> bool:
                nonlocal excluded, last_check, checked_upto
                stop.count_step()
                if stop.requested:
                    return False
                passed = checks_passed(u.global_step)
                if (passed > checked_upto and u.global_step % spe != 0
                        and budget.checking(state.best_accuracy)):
                    # Near the target: evaluated here, inside the agent's loop (stopping it would
                    # end its episode early), and off the clock; the timer waits for the queued
                    # training work first, which stays on the clock.
                    checked_upto = passed
                    timer = DeviceTimer(device)
                    timer.start()
                    now = t_start + clock.elapsed() - excluded
                    ev = u.evaluate(eval_split(u, protocol))
                    excluded += timer.stop()
                    state.checks.append(check_record(u, state, spe, protocol, ev, now))
                    state.best_accuracy = max(state.best_accuracy, ev["accuracy"])
                    last_check = (u.global_step, ev)
                    if budget.reached(state.best_accuracy):
                        return False
                # note: the step's numbers were read on the host (the Recorder's records need them),
                # so the host's clock is honest; a seconds or FLOPs budget spent ends the run
                # inside this epoch
                return not budget.spent(t_start + clock.elapsed() - excluded, state.total.flops)

            overhead_before = agent.overhead_time_s
            epoch_before = u.global_step // spe
            clock.start()
            try:
                agent.train(recorder, steps=steps, callback=callback)
            except KeyboardInterrupt:  # a second Ctrl-C inside a step: keep the last checkpoint
                return write_metrics("interrupted")
            state.time_s += clock.stop() - excluded  # the device's queued work included, the checks not
            state.overhead_s += agent.overhead_time_s - overhead_before
            # An agent may overrun the steps it was asked for (SB3 rounds to whole rollouts):
            # an epoch ends when the env's step count crosses a multiple of the epoch length.
            epoch_end = u.global_step // spe > epoch_before
            if epoch_end or done():
                # a check that reached the target, the last thing the run did, is its last row
                check = last_check[1] if last_check is not None and last_check[0] == u.global_step else None
                record = epoch_record(u, state, spe, protocol, ev=check)
                checked_upto = checks_passed(u.global_step)
                state.history.append(record)
                accuracy = record["val_accuracy"] if record["val_accuracy"] is not None else record["test_accuracy"]
                state.best_accuracy = accuracy if state.best_accuracy is None else max(state.best_accuracy, accuracy)
                state.epoch = Sums()
                if log is not None:
                    log.epoch(record)
                if on_epoch is not None:
                    on_epoch(record)
                bar.set_postfix(acc=f"{accuracy:.3f}", reward=f"{record['mean_reward']:.3f}")
                bar.update(1 if by_epoch else min(round(state.time_s, 1), bar_total) - bar.n)
            if stop.requested:
                save_checkpoint(out, env, agent, state, config)
                return write_metrics("interrupted")
            if epoch_end and ((u.global_step // spe) % max(checkpoint_every, 1) == 0 or done()):
                save_checkpoint(out, env, agent, state, config)
            write_metrics("running")
        spent = ended_by_budget()
        final = summary(u, agent, state, masked_eval)
        metrics = write_metrics("paused" if pause_at_epochs and not spent else "complete", final)
        if log is not None and metrics["meta"]["status"] == "complete":
            log.final(final, u.global_step)
    except BaseException:
        if log is not None:
            with contextlib.suppress(WriteError):  # the error in flight is the one to report
                log.close()
        raise
    finally:
        bar.close()
        if log is not None:
            log.close()
        if own_stop:
            stop.__exit__(None, None, None)

    if save_agent:
        with writing(out / f"agent{agent.save_suffix}"):  # a plug-in's save may write without patchenv.atomic
            agent.save(out / f"agent{agent.save_suffix}")
    if not keep_checkpoint:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        (out / "progress.json").unlink(missing_ok=True)
    return metrics


def print_line(text: str, show_progress: bool) -> None:
    """A line that does not break the progress bars."""
    if show_progress:
        tqdm.write(text)
    else:
        print(text, flush=True)
