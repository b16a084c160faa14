"""TrainingRun: one training run of a ViT, the state the env steps and an agent acts on.

It owns everything that changes while a ViT trains: the model and optimiser, the data
order and its generator, the pending batch, its embedding and the observation made from
it, the counters, the reward's reference loss, the progress statistics and the probe.
Its operations are the run's: `start` a fresh run, `train_on` a keep, `record` what the
update did, `advance` to the next batch, `observe`, and its checkpoint state
(`patchenv.env.run_checkpoint`). The shared, fixed part (data set, ViT shape, probe
batch) is its `RunSetup`.

`PatchSelectionEnv` is the Gymnasium shell around one run (spaces, the action, the
reward, the episode, the info); a population (`patchenv.population`) holds E runs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from patchenv.arrays import to_numpy
from patchenv.data.transforms import draw_augmentation
from patchenv.env import render as render_mod
from patchenv.env.counters import CounterRow, RunCounters
from patchenv.env.progress import ProgressTracker
from patchenv.env.run_setup import RunSetup
from patchenv.model.cuda_graph import GraphedStep
from patchenv.model.keep import Keep
from patchenv.model.training import StepResult, autocast, compile_forward, make_optimizer, new_model, train_step
from patchenv.model.vit import SimpleViT
from patchenv.timing import Lap, SecondsSum


@dataclass
class Update:
    """What `TrainingRun.record` learnt of a training step, for the step's outcome."""

    result: StepResult
    flops: int  # training FLOPs of the step
    probe_flops: int  # the probe's forward FLOPs charged to this step
    progress_reward: float
    trained_epoch: int


class TrainingRun:
    """One training run (module docstring). Built empty; `start` (or a checkpoint's
    `run_checkpoint.restore`) makes it a run."""

    def __init__(self, setup: RunSetup, render: bool = False, counters: Optional[RunCounters] = None,
                 progress: Optional[ProgressTracker] = None, row: int = 0):
        self.setup = setup
        self.keep_for_render = render  # keep the last trained batch for render()
        self.model: Optional[SimpleViT] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.forward_selected: Optional[Callable] = None  # the model's (compiled with compile=True)
        self.graphed: Optional[GraphedStep] = None  # the CUDA-graph step (cuda_graph=True)
        self.data_gen: Optional[torch.Generator] = None
        self.perm: Optional[torch.Tensor] = None  # this epoch's data order
        self.pos = 0  # index of the pending batch within the epoch
        # The epoch, global and episode step and L(ref): row `row` of `counters`, and the
        # progress statistics: row `row` of `progress` (a population's runs share one of
        # each; a single env's run has its own).
        self.counters = RunCounters(1, setup.device) if counters is None else counters
        self.row = row
        self.batch_x: Optional[torch.Tensor] = None  # the pending batch, augmented and normalised
        self.batch_y: Optional[torch.Tensor] = None
        self.tokens: Optional[torch.Tensor] = None  # its embedding, with its autograd graph
        self.obs: Optional[torch.Tensor] = None  # its observation, a device tensor
        self.progress = ProgressTracker(setup.num_patches, device=setup.device) if progress is None else progress
        self.pending_probe_flops = 0  # a probe run before the first step, charged to it
        self.credit: Optional[tuple] = None  # (dL/d(token), keep) of the last step, for patch_credit()
        self.rendered: Optional[tuple] = None  # (images, keep mask) of the last trained batch
        self.last_keep: Optional[Keep] = None  # the last step's keep (records and render)
        self.time = SecondsSum()  # wall clock of the steps (evaluation excluded), read when asked

    # -- its counters (row `row` of `counters`) ------------------------------------------
    epoch = CounterRow()
    global_step = CounterRow()
    episode_step = CounterRow()

    @property
    def loss_ref(self) -> Optional[float]:
        """The reward's L(ref), once the run's step loss_ref_step has run (None before; note:
        read from the device, for checkpoints)."""
        value = float(self.counters.loss_ref[self.row])
        return None if np.isnan(value) else value

    @loss_ref.setter
    def loss_ref(self, value: Optional[float]) -> None:
        self.counters.loss_ref[self.row] = float("nan") if value is None else value

    # -- a fresh run -------------------------------------------------------------------
    def parts(self, model_seed: Optional[int]) -> dict:
        """A ViT (weights from `model_seed`; None: for a checkpoint to fill), its optimiser,
        the step functions and a data generator, not yet this run's (`use_parts`), so that
        a checkpoint can fill them and be checked before the running run changes."""
        s = self.setup
        cfg = s.config
        model = new_model(s.vit_config, s.device, model_seed)
        optimizer = make_optimizer(model, cfg.lr, capturable=s.cuda_graph)
        forward_selected = (compile_forward(model, cfg.amp, s.batch_size) if cfg.compile
                            else model.forward_selected)
        graphed = None
        if s.cuda_graph:
            graphed = GraphedStep(model, optimizer, s.device, lambda: autocast(s.device, cfg.amp, cache_enabled=False))
        return dict(model=model, optimizer=optimizer, forward_selected=forward_selected, graphed=graphed,
                    data_gen=torch.Generator(s.device))

    def use_parts(self, parts: dict) -> None:
        self.model, self.optimizer = parts["model"], parts["optimizer"]
        self.forward_selected, self.graphed, self.data_gen = (parts["forward_selected"], parts["graphed"],
                                                              parts["data_gen"])

    def use_model(self, model: SimpleViT, optimizer: torch.optim.Optimizer) -> None:
        """Train `model` with `optimizer` from now on (a population's views of its stacked
        weights, holding this run's weights and moments already)."""
        self.model, self.optimizer, self.forward_selected = model, optimizer, model.forward_selected

    def start(self, rng: np.random.Generator) -> None:
        """A fresh run from `rng` (the env's ``np_random``): weights, data order, counters,
        probe, and the first pending batch."""
        model_seed, data_seed = (int(s) for s in rng.integers(0, 2**62, size=2))
        self.use_parts(self.parts(model_seed))
        self.rendered = None
        self.data_gen.manual_seed(data_seed)
        self.epoch, self.global_step, self.episode_step = 0, 0, 0
        self.loss_ref = None
        self.time = SecondsSum()
        self.new_epoch_order()
        self.credit = None
        self.progress.reset(self.row)
        self.pending_probe_flops = 0
        if self.setup.uses_probe:  # the untrained ViT's probe: the first observation has one
            self.run_probe()
            self.pending_probe_flops = self.setup.probe_flops
        self.load_batch()

    # -- its checkpoint state ---------------------------------------------------------
    def checkpoint_state(self) -> dict:
        """What continues this run bit for bit: weights, optimiser, data generator and order,
        position, counters, L(ref), pending batch, clock and progress statistics (tensors and
        plain values; `patchenv.env.run_checkpoint` writes them with the env's part)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "data_gen": self.data_gen.get_state(), "perm": self.perm, "pos": self.pos, "epoch": self.epoch,
                "global_step": self.global_step, "episode_step": self.episode_step, "loss_ref": self.loss_ref,
                "batch_x": self.batch_x, "batch_y": self.batch_y, "train_time_s": self.train_time_s,
                "progress": self.progress.state_dict(self.row), "pending_probe_flops": self.pending_probe_flops}

    def load_checkpoint_state(self, state: dict) -> None:
        """Continue the run `state` (`checkpoint_state`) describes, and make its pending
        observation. Everything is read into new objects first: a state that does not fit
        raises (KeyError, ValueError, RuntimeError) with this run as it was."""
        parts = self.parts(model_seed=None)
        parts["model"].load_state_dict(state["model"])
        # Checkpoints from before the progress statistics existed have none: fresh
        # statistics (their envs neither observed nor rewarded progress).
        progress = ProgressTracker.check_state(state["progress"]) if "progress" in state else None
        parts["optimizer"].load_state_dict(state["optimizer"])
        missing = {"data_gen", "perm", "pos", "epoch", "global_step", "episode_step", "loss_ref", "batch_x",
                   "batch_y", "train_time_s"} - set(state)
        if missing:
            raise KeyError(f"missing {sorted(missing)}")
        device = self.setup.device
        _restore_generator(parts["data_gen"], state["data_gen"].cpu())  # generator states are CPU byte tensors
        perm, batch_x, batch_y = (state[k].to(device) for k in ("perm", "batch_x", "batch_y"))
        self.use_parts(parts)  # nothing of the running run has changed before this line
        self.perm, self.batch_x, self.batch_y = perm, batch_x, batch_y
        self.pos, self.epoch = state["pos"], state["epoch"]
        self.global_step, self.episode_step = state["global_step"], state["episode_step"]
        self.loss_ref = state["loss_ref"]
        self.time = SecondsSum(state["train_time_s"])
        if progress is None:
            self.progress.reset(self.row)
        else:
            self.progress.load_state_dict(self.row, progress)
        self.pending_probe_flops = state.get("pending_probe_flops", 0)
        self.credit = None
        self.prepare_observation()

    def begin_episode(self) -> None:
        """A new episode of the same run: its step count starts again (and with it the
        progress observation's share of the episode done)."""
        self.episode_step = 0
        if self.setup.config.obs_type == "progress":
            self.obs = self.observe(None)

    # -- one step ----------------------------------------------------------------------
    def train_on(self, keep: Keep) -> StepResult:
        """One update on the pending batch with the kept patches (no bookkeeping)."""
        # The observation's embedding, reused when it has its autograd graph. There is none
        # with CUDA graphs (the graph embeds), nor when the observation does not read it
        # (obs_type="progress"): then the step embeds only the kept patches.
        cfg = self.setup.config
        tokens = self.tokens if self.tokens is not None and self.tokens.requires_grad else None
        return train_step(self.model, self.optimizer, self.batch_x, self.batch_y, keep.index, cfg.amp,
                          tokens=tokens, forward_selected=self.forward_selected,
                          graphed=self.graphed)

    def record(self, keep: Keep, result: StepResult) -> Update:
        """The run's bookkeeping after an update, before the next batch is loaded
        (`record_steps` for this run alone)."""
        return record_steps([self], [keep], [result])[0]

    def after_update(self, keep: Keep, result: StepResult, trained_epoch: int, flops: int) -> Update:
        """The run's own part of `record_steps`, once its counters and statistics have
        counted the step: the probe (every probe_every steps, with the updated weights, when
        the update was finite), the token gradients and the keep, for patch_credit() and
        render()."""
        s, cfg = self.setup, self.setup.config
        # A step replayed from a CUDA graph keeps no token gradients: no credit then.
        self.credit = None if result.token_grad is None else (result.token_grad, result.token_keep)
        self.last_keep = keep
        probe_flops, self.pending_probe_flops = self.pending_probe_flops, 0
        progress_reward = 0.0
        if s.uses_probe and self.global_step % cfg.probe_every == 0:
            probed, progress_reward = self.run_probe(result.finite)
            probe_flops += s.probe_flops if probed else 0
        if self.keep_for_render:
            self.rendered = render_mod.remember(self.batch_x, keep)
        return Update(result, flops, probe_flops, progress_reward, trained_epoch)

    def add_time(self, lap: Lap) -> None:
        """A step of this run took `lap` (read when the run's time is: a step does not wait)."""
        self.time.add(lap)

    @property
    def train_time_s(self) -> float:
        """Cumulative wall clock of the steps (note: on CUDA, waits for the last step's end)."""
        return self.time.total

    @property
    def last_step_time_s(self) -> float:
        """Wall clock of the last step (0 before any; note: waits, as `train_time_s`)."""
        return self.time.last

    # -- data order and the pending batch ---------------------------------------------
    def new_epoch_order(self) -> None:
        self.perm = torch.randperm(len(self.setup.data.train_y), device=self.setup.device, generator=self.data_gen)
        self.pos = 0

    def advance(self) -> None:
        """Move to the next batch (the next epoch's first, after the last), load it and
        make its observation with the current weights."""
        self.next_position()
        self.load_batch()

    def next_position(self) -> None:
        """The data position of the next batch: the next epoch's first (and its new order)
        after the last."""
        self.pos += 1
        if self.pos >= self.setup.steps_per_epoch:
            self.epoch += 1
            self.new_epoch_order()

    def next_batch_draws(self) -> tuple[torch.Tensor, tuple]:
        """Move to the next batch and draw its augmentation, without loading it: (the
        training images' indices (B,), the augmentation's draws). A population loads
        every run's batch at once from these (`set_batch`)."""
        self.next_position()
        return self.batch_indices(), draw_augmentation(self.setup.batch_size, self.setup.device, self.data_gen)

    def batch_indices(self) -> torch.Tensor:
        """The training images of the pending batch, (B,) indices on the device."""
        b = self.setup.batch_size
        return self.perm[self.pos * b:(self.pos + 1) * b]

    def load_batch(self) -> None:
        s = self.setup
        draws = draw_augmentation(s.batch_size, s.device, self.data_gen)
        self.batch_x, self.batch_y = s.training_batch(self.batch_indices(), draws)
        self.prepare_observation()

    def set_batch(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Make (x, y) the pending batch; its embedding and observation are the caller's."""
        self.batch_x, self.batch_y = x, y

    # -- what the agent observes -------------------------------------------------------
    def prepare_observation(self) -> None:
        # The embedding keeps its autograd graph: the eager training step on this batch
        # reuses it. A CUDA-graph step embeds inside its graph, so it needs none. An
        # observation that does not read it (progress) is made without it: the training step
        # then embeds the kept patches only.
        if not self.model.training:
            self.model.train()
        if self.setup.embeds_kept_only:
            self.tokens = None
        else:
            with autocast(self.setup.device, self.setup.config.amp), torch.set_grad_enabled(self.graphed is None):
                self.tokens = self.model.embed(self.batch_x)  # (B, N, D)
        self.obs = self.observe(self.tokens)

    def set_observation(self, tokens: Optional[torch.Tensor], obs: torch.Tensor) -> None:
        """The pending batch's embedding and observation (made by a population for all its
        runs; or the step's settled observation, `outcome.settle_observations`)."""
        self.tokens, self.obs = tokens, obs

    def observe(self, tokens: Optional[torch.Tensor], for_agent: bool = False):
        """The observation of `tokens` (a batch's embedding) as a device tensor; ``for_agent``:
        in the form the agent gets (numpy unless ``tensor_obs``)."""
        obs = observation(self.setup.config.obs_type, tokens, self.model.attention_state, self.progress_vector,
                          self.setup.config.amp, self.setup.device)
        return self.agent_view(obs) if for_agent else obs

    def agent_view(self, obs: torch.Tensor):
        """An observation as the agent gets it: the device tensor with ``tensor_obs``, else numpy
        (note: a device-to-host copy, the Gymnasium boundary)."""
        return obs if self.setup.config.tensor_obs else to_numpy(obs)

    def progress_vector(self) -> torch.Tensor:
        """The progress observation (`patchenv.env.progress`) of the run now, on the device."""
        return progress_vectors([self])[0]

    @torch.no_grad()
    def run_probe(self, finite: Optional[torch.Tensor] = None) -> tuple[bool, float]:
        """Evaluate the probe with every patch and record it, unless `finite` (the update's,
        0-d bool) is False: then the step diverged and the probe counts for nothing.
        Returns (whether it counted, the progress reward of the interval it closes)."""
        x, y = self.setup.probe
        model = self.model
        was_training = model.training
        model.eval()
        with autocast(self.setup.device, self.setup.config.amp):
            logits = model(x)
        model.train(was_training)
        # note: the probe step's one sync: the probe's statistics and the progress reward are
        # the host's (they decide its compute accounting); the update's finiteness comes along.
        ok = torch.ones((), device=logits.device) if finite is None else finite.float()
        loss, acc, ok = torch.stack([F.cross_entropy(logits.float(), y), (logits.argmax(-1) == y).float().mean(),
                                     ok]).tolist()
        if not ok:
            return False, 0.0
        return True, self.progress.after_probe(self.row, loss, acc, self.setup.probe_flops)


@torch.no_grad()
def observation(obs_type: str, tokens: Optional[torch.Tensor], attention_state: Callable,
                progress: Callable[[], torch.Tensor], amp: Optional[str], device: torch.device) -> torch.Tensor:
    """The observation (float32, on the device) of the embedding `tokens` (..., B, N, D):
    one batch's (B, N, D) or a population's (E, B, N, D), the leading dimensions kept.
    `attention_state(tokens)` is the paper's state of the ViT(s) that embedded them;
    `progress()` the run(s)' progress vector(s) on the device, for ``obs_type="progress"``,
    whose observation does not read the tokens."""
    if obs_type == "progress":
        return progress()
    tokens = tokens.detach()
    if obs_type == "embeddings":
        obs = tokens
    elif obs_type == "pooled":
        obs = tokens.mean(dim=-3)
    else:
        with autocast(device, amp):
            obs = attention_state(tokens)
    return obs.float()


def _restore_generator(generator: torch.Generator, saved: torch.Tensor) -> None:
    """The data order's generator from a checkpoint. CPU and CUDA generators keep
    different states (5056 vs 16 bytes), so a run moved to the other device type is
    reseeded from a hash of the saved state: deterministic, and the pending batch is
    the saved one, but later epochs' order and crops differ from the original
    device's. On the same device type the run continues exactly."""
    try:
        generator.set_state(saved)
    except RuntimeError:
        digest = hashlib.sha256(saved.numpy().tobytes()).digest()
        generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def record_steps(runs: Sequence[TrainingRun], keeps: Sequence[Keep], results: Sequence[StepResult]) -> list[Update]:
    """The bookkeeping of one training step of each of `runs` (rows of one `RunCounters`
    and one `ProgressTracker`: a single env's run, or a population's training runs),
    before their next batches load: the counters and L(ref), and the progress statistics,
    counted for all at once; then each run's probe and what it keeps of the step
    (`TrainingRun.after_update`)."""
    setup = runs[0].setup
    rows = np.array([run.row for run in runs])
    losses = torch.stack([r.loss for r in results]).double()  # on the device, as is all the update measured
    trained_epoch = runs[0].counters.after_updates(rows, losses, ~torch.stack([r.finite for r in results]),
                                                   setup.config.loss_ref_step)
    # The transformer ran on (B, largest count kept): select_tokens pads uneven per-image
    # masks to the batch's largest count and needs no padding otherwise.
    flops = [setup.train_flops(k.longest) for k in keeps]
    pending = [run.pending_probe_flops for run in runs]
    full = setup.train_flops(setup.num_patches)
    # The statistics before the probe (with the updated weights, before the next batch's
    # observation is made from them).
    runs[0].progress.after_steps(rows, losses, np.array([k.kept for k in keeps], dtype=np.float64),
                                 [f + p for f, p in zip(flops, pending)], [full + p for p in pending])
    return [run.after_update(keep, result, int(epoch), f)
            for run, keep, result, epoch, f in zip(runs, keeps, results, trained_epoch, flops)]


def progress_vectors(runs: Sequence[TrainingRun]) -> torch.Tensor:
    """The progress observations (len(runs), 9) of `runs` (rows of one `RunCounters` and
    one `ProgressTracker`), made at once: the budget done is the run's steps over its
    planned steps (without a budget, its episode's share done)."""
    s = runs[0].setup
    rows = np.array([run.row for run in runs])
    counters = runs[0].counters
    budget_done = (counters.global_step[rows] / s.total_steps if s.total_steps is not None
                   else counters.episode_step[rows] / s.episode_steps)
    epoch_done = np.array([run.pos for run in runs]) / s.steps_per_epoch
    return runs[0].progress.observations(rows, budget_done, epoch_done)
