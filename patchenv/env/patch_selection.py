"""PatchSelectionEnv: an RL agent picks which image patches a ViT trains on.

The contract (spaces, reward, episodes, info) is the class docstring; the settings are
`patchenv.env.config.EnvConfig`'s fields. The class is the Gymnasium shell (spaces, the
action, the reward, the episode, the info) around one `TrainingRun` (``env.run``: the
ViT, its optimiser, data order, pending batch, counters and statistics), whose fixed part
is a `RunSetup` (``env.setup``). Beside it: `action` (parsing), `outcome` (episode end,
reward and info of a step), `evaluation`, `run_checkpoint`, `rewards`, `progress`, `render`.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import fields
from typing import Any, Optional, Union

import gymnasium as gym
import numpy as np
import torch

from patchenv.env import render as render_mod
from patchenv.env import run_checkpoint
from patchenv.env.action import parse_action
from patchenv.env.config import EnvConfig, keyword_signature
from patchenv.env.counters import RunCounters
from patchenv.env.evaluation import evaluate
from patchenv.env import outcome
from patchenv.env.outcome import REPEAT_SUMS
from patchenv.env.presets import with_preset
from patchenv.env.progress import ProgressTracker
from patchenv.env.run_setup import RunSetup
from patchenv.env.spaces import action_space, observation_space, refuse_gymnasium_check_env
from patchenv.env.training_run import TrainingRun, Update
from patchenv.model.keep import Keep
from patchenv.model.training import autocast
from patchenv.model.vit import place_tokens
from patchenv.timing import DeviceTimer

_ARGUMENTS = tuple(f.name for f in fields(EnvConfig))


class PatchSelectionEnv(gym.Env):
    """An RL agent picks which image patches a Vision Transformer trains on.

    ## Description
    A SimpleViT (`patchenv/model/vit.py`; the paper's: dim 128, depth 6, 16 heads, 4x4 patches,
    N = 64 on 32x32 images) really trains while the agent chooses, batch by batch, which
    of its N patches it sees. One `step` is one optimisation step of the ViT:

    1. the observation describes batch t, computed from the ViT's current weights;
    2. ``step(mask)`` trains on batch t with only the kept patches (dropped tokens are
       removed from the sequence, not zeroed, so the step really is cheaper), computes the
       reward, loads batch t+1 and returns its observation.

    The patch embedding that built the observation of batch t keeps its autograd graph
    and the training step reuses it, so no forward work is done twice. The data set sits
    on the device; shuffling and augmentation run there as batched tensor ops.

    ## Action Space
    With N patches per image and B images per batch:

    - ``selection="batch"`` (the paper): ``MultiBinary(N)``, one mask for the whole batch;
    - ``selection="image"``: ``MultiBinary((B, N))``, one mask per image (rows of unequal
      counts are padded to the largest, hidden from attention and from the pooling);
    - ``selection="count"``: ``Discrete(N)``, keep-rate control: action a keeps a + 1
      patches of every image, drawn uniformly at random for each image (the env's
      ``np_random``; equal counts, so no padding).

    1 keeps a patch, 0 drops it. numpy arrays, lists and torch tensors of any real dtype
    are accepted (a count: an integer, 0-d or one-element array or tensor). A mask must
    keep at least one patch (per image); a bad action raises a ValueError or TypeError
    saying what was expected and changes nothing.

    ## Observation Space
    ``Box(-inf, inf, float32)`` of shape, by ``obs_type`` (D = embedding width):

    - ``"embeddings"`` (default): (B, N, D), patch embeddings plus position embedding;
    - ``"pooled"``: (N, D), their mean over the batch (small enough for SB3);
    - ``"attention"``: (B, N), the paper's state: the first block's attention output on
      all patches, averaged over D;
    - ``"progress"``: (9,), how far training has got (`patchenv.env.progress`: budget and
      epoch done, training loss and trend, the held-out probe's loss, accuracy and its
      change, patches kept so far and last); the default for ``selection="count"``.

    numpy by default. ``tensor_obs=True``: float32 torch tensors on the env's device, for
    agents in the same process (a GPU agent then makes no host copy); read-only (shared
    with the env). Its space is a `patchenv.env.spaces.TensorBox`. Gymnasium's tools
    expect numpy: ``check_env`` is refused with a TypeError (check the env built with
    ``tensor_obs=False``: same dynamics and numbers), an async vector env too; a sync one
    (``gym.make_vec(..., vectorization_mode="sync")``) stacks the tensors on the device.

    ## Rewards
    ``loss_weight * L(ref) / L(t) + patch_weight * (-|z - z*| / z*)`` (`patchenv.env.rewards`):
    L(t) is this step's training loss, L(ref) the training loss of the run's step
    ``loss_ref_step`` (counted from 1; default 1, the run's first step; the steps before it
    are their own reference, loss term 1), z the dropped patches per image (mean over the
    batch), z* = N - ``n_patch_desired``. The paper's code weighs (1, 20); ``alpha`` sets
    (alpha, 1 - alpha); ``reward_fn`` replaces the formula. AgentViT asks for
    ``loss_ref_step = frequency``, the notebook's reference (its first rewarded batch).

    ``reward="progress"``: the held-out probe's loss decrease per unit of compute, paid on
    every ``probe_every``-th step, 0 between (`patchenv.env.progress`). The probe is held out
    with ``val_fraction > 0``; without a validation split it is a fixed batch of training
    images (a warning says so).

    ## Starting State
    ``reset(seed=s)`` starts a fresh training run: a new ViT, Adam optimiser and data
    order, all drawn from s. ``reset()`` without a seed continues the same run where it
    stopped (the next epoch, by default); ``reset(options={"new_run": True})`` forces a
    fresh run. The first observation describes the run's first pending batch. After
    ``load_checkpoint`` the next ``reset()`` without a seed continues the saved episode
    (same step count, so it truncates where the uninterrupted run did).

    ## Episode End
    - Truncation: after ``episode_steps`` steps (default one epoch; the last incomplete
      batch of an epoch is dropped).
    - Termination: a non-finite loss or gradient (that update is not applied), or a finite
      update after which the next observation is not finite (weights that overflow, e.g.
      from a huge lr; that observation is returned as zeros). ``info["diverged"]`` is True.

    A step after the episode's end raises ResetNeeded, with one exception: with
    ``tensor_obs=True`` the env does not wait for the device to learn that a step
    diverged (``terminated`` is a tensor), so a step after a termination is not refused;
    it trains on (the diverged update was not applied). Call ``reset()`` when
    ``terminated`` is True.

    ## Host reads
    ``tensor_obs=False``: a step reads the device once (the observation and its numbers,
    in one copy). ``tensor_obs=True``: none with a host action (numpy, list, an int
    count); a torch action is read once (its kept count decides the sequence length).
    Besides: a step that runs the probe (``probe_every``) reads its result once; with
    ``tensor_obs=True`` a ``reward_fn`` reads the numbers it is given, ``action_repeat >
    1`` each repeated step's end.
    On CUDA the step's clock does not wait either (``last_step_time_s`` waits when read).

    ## Info
    Every step: ``loss``, ``accuracy`` (batch, fraction), ``kept`` (mean patches kept per
    image), ``kept_per_image`` (per-image mode), ``tokens`` (real tokens the transformer
    processed), ``padding_tokens`` (filler slots of uneven per-image masks), ``epoch``,
    ``global_step``, ``loss_term``, ``patch_term``, ``diverged``, ``flops`` (int: this
    step's training FLOPs, forward + backward, from the shapes by
    `patchenv.model.flops.step_flops`: the embedding of all N patches (of the kept ones
    with ``obs_type="progress"``, whose step embeds only those), the transformer on
    (B, largest count kept), padding included, the head; matrix products only; the
    observation's own extra work, e.g. ``obs_type="attention"``, is not training and not
    counted) plus, on a step that evaluated the probe, the probe's forward FLOPs, also
    given alone as ``probe_flops`` (0 on other steps). No wall-clock values
    (Gymnasium's checker compares the infos of two seeded steps): ``train_time_s`` and
    ``last_step_time_s`` are attributes of the unwrapped env.

    ## Rendering
    ``render_mode="rgb_array"``: ``render()`` returns a uint8 (H, W, 3) frame of the first
    images of the batch just trained (before any step: the pending batch), denormalised,
    with the patches the last action dropped greyed out (`patchenv.env.render`).

    ## Copying
    The env holds a live training run (a ViT, its optimiser, device tensors, an autograd
    graph), so ``pickle`` and ``copy.deepcopy`` refuse with a TypeError: continue a run
    elsewhere with ``save_checkpoint(path)`` and ``load_checkpoint(path)`` in a new env.

    Beside the Gymnasium API: ``evaluate(split, masks)`` (loss and accuracy on a whole
    split, or on the fixed test subset ``eval_fraction`` keeps; ``split="val"``: the
    validation split ``val_fraction`` holds out of the training set), ``save_checkpoint(path)``
    / ``load_checkpoint(path)`` (the whole training run, continued bit for bit),
    ``pending_images``, ``attention_state(images)`` and ``patch_credit()`` (each kept
    token's gradient norm in the last step: which patches the loss cared about) for agents.

    ## Arguments
    Keyword only: the fields of `patchenv.env.config.EnvConfig`, documented there, with the
    paper's CIFAR-10 setup as defaults; the env keeps them as ``env.config``. E.g.
    ``gymnasium.make("patchenv/Digits-v1", batch_size=32, selection="image")``. ``preset``
    (`patchenv.env.presets`: "tiny", "small" or "paper") names a ViT and batch size, and the
    keywords given win over it: ``gymnasium.make("patchenv/Digits-v1", preset="tiny", dim=64)``.

    ## Version History
    - v1: what v0 became while keeping its name (docs/env.md): the notebook's ViT head
      (checkpoint format v1), ``val_fraction`` and ``info["flops"]``, ``selection="count"``
      with the progress observation and reward, ``tensor_obs``'s ``TensorBox``, ``preset``.
      Results of v0 and v1 differ; ``-v0`` ids are refused by Gymnasium, naming ``-v1``.
    - v0: the first release (a LayerNorm on every token before pooling).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, *, preset: Optional[str] = None, **kwargs: Any):
        kwargs = with_preset(preset, kwargs)
        unknown = [name for name in kwargs if name not in _ARGUMENTS]
        if unknown:
            close = difflib.get_close_matches(unknown[0], _ARGUMENTS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; expected names among {sorted(_ARGUMENTS)}"
            raise TypeError(f"PatchSelectionEnv got an unexpected keyword argument {unknown[0]!r}{hint}")
        self._shell(RunSetup(EnvConfig(**kwargs)))

    @classmethod
    def around(cls, setup: RunSetup, counters: Optional[RunCounters] = None,
               progress: Optional[ProgressTracker] = None, row: int = 0) -> "PatchSelectionEnv":
        """An env over `setup` whose run counts in row `row` of `counters` and `progress` (a
        population's runs share one setup, one copy of the data set, and one of each)."""
        env = cls.__new__(cls)
        env._shell(setup, counters, progress, row)
        return env

    def _shell(self, setup: RunSetup, counters: Optional[RunCounters] = None,
               progress: Optional[ProgressTracker] = None, row: int = 0) -> None:
        self.setup, self.config = setup, setup.config
        cfg = setup.config
        # The settings agents and front ends read, from the (frozen) config and the setup.
        self.device, self.cuda_graph, self.val_fraction = setup.device, setup.cuda_graph, cfg.val_fraction
        self.dataset_name, self.data, self.num_patches = setup.dataset_name, setup.data, setup.num_patches
        self.vit_config, self.steps_per_epoch = setup.vit_config, setup.steps_per_epoch
        self.episode_steps, self.total_steps = setup.episode_steps, setup.total_steps
        self.batch_size, self.lr, self.n_patch_desired = cfg.batch_size, cfg.lr, cfg.n_patch_desired
        self.selection, self.obs_type, self.tensor_obs = cfg.selection, cfg.obs_type, cfg.tensor_obs
        self.amp, self.compile, self.eval_batch_size = cfg.amp, cfg.compile, cfg.eval_batch_size
        self.alpha, self.reward_fn, self.loss_ref_step = cfg.alpha, cfg.reward_fn, cfg.loss_ref_step
        self.loss_weight, self.patch_weight = cfg.reward_weights
        self.eval_fraction, self.action_repeat, self.reward_kind = cfg.eval_fraction, cfg.action_repeat, cfg.reward
        self.render_mode = cfg.render_mode

        self.action_space = action_space(self.selection, self.batch_size, self.num_patches)
        self.observation_space = observation_space(self.obs_type, self.batch_size, self.num_patches, cfg.dim,
                                                   self.device if self.tensor_obs else None)
        # The training run: a ViT once reset() (or load_checkpoint()) has started one.
        self.run = TrainingRun(setup, render=self.render_mode is not None, counters=counters,
                               progress=progress, row=row)
        self._clock = DeviceTimer(self.device, sync_start=False)  # a step waits for nothing, its clock included
        self.episode_over = False  # terminated or truncated, until the next reset()
        self._terminated: Optional[torch.Tensor] = None  # tensor_obs: the last step's, unread
        self._restored = False  # set by load_checkpoint: the next reset() continues its episode

    # The run's state, as agents and front ends read it from the env.
    model = property(lambda self: self.run.model, doc="The ViT being trained (None before reset).")
    optimizer = property(lambda self: self.run.optimizer, doc="Its optimiser.")
    epoch = property(lambda self: self.run.epoch, doc="The pending batch's epoch.")
    global_step = property(lambda self: self.run.global_step, doc="Training steps since the run started.")
    train_time_s = property(lambda self: self.run.train_time_s,
                            doc="Cumulative wall clock of step() in this run (evaluation excluded).")
    last_step_time_s = property(lambda self: self.run.last_step_time_s, doc="Wall clock of the last step.")
    last_keep = property(lambda self: self.run.last_keep, doc="The last step's action, parsed (a `Keep`).")

    # -- Gymnasium API ----------------------------------------------------------------
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if self.tensor_obs:
            refuse_gymnasium_check_env()  # it cannot compare tensors; a clear refusal instead of its crash
        super().reset(seed=seed)
        options = options or {}
        restored, self._restored = self._restored, False
        run = self.run
        if seed is not None or run.model is None or options.get("new_run", False):
            run.start(self.np_random)
        elif restored and not self.episode_over:
            # The first reset after load_checkpoint continues the saved episode, so that a
            # resumed run truncates where the uninterrupted one did (exact resume).
            return self._observation(), {"epoch": run.epoch, "global_step": run.global_step}
        self.episode_over, self._terminated = False, None
        run.begin_episode()
        return self._observation(), {"epoch": run.epoch, "global_step": run.global_step}

    def step(self, action):
        if self.run.model is None:
            raise gym.error.ResetNeeded("call reset() before step(): there is no training run yet")
        if self.episode_over:
            raise gym.error.ResetNeeded("the episode has ended (terminated or truncated); call reset() before step()")
        # Validated and parsed once, before anything changes.
        keep = parse_action(action, self.selection, self.num_patches, self.batch_size, self.device, self.np_random)
        obs, reward, terminated, truncated, info = self._train_once(keep)
        # action_repeat (Gymnasium/ALE's frameskip): the same action for up to k training
        # steps, the rewards summed, the last step's info with the counts summed; it stops
        # where the episode ends. A count draws new patches each step, as k steps would.
        done, total, sums = 1, reward, {k: info[k] for k in REPEAT_SUMS}
        # note: with tensor_obs, each repeated step reads its end (the repeat stops there).
        while done < self.action_repeat and not (terminated or truncated):
            if self.selection == "count":
                keep = parse_action(action, "count", self.num_patches, self.batch_size, self.device, self.np_random)
            obs, reward, terminated, truncated, info = self._train_once(keep)
            done, total = done + 1, total + reward
            sums = {k: sums[k] + info[k] for k in REPEAT_SUMS}
        if self.action_repeat > 1:
            info = {**info, **sums, "steps": done}
        return obs, total, terminated, truncated, info

    def _train_once(self, keep: Keep) -> tuple:
        """One training step keeping `keep`: Gymnasium's (obs, reward, terminated, truncated,
        info) (`conclude`)."""
        # No sync here: a torch mask was synchronised by parse_action (its length decides
        # the sequence length); the update, the next batch and its observation are queued
        # before `conclude` decides whether anything waits.
        run = self.run
        self._clock.start()
        done = run.record(keep, run.train_on(keep))
        run.advance()  # load batch t+1 and its observation with the updated weights
        try:
            return self.conclude(keep, done)
        finally:  # a failing reward_fn raises here, and the step it follows is applied and timed
            run.add_time(self._clock.lap())

    def conclude(self, keep: Keep, done: Update) -> tuple:
        """What a step means to the agent once the run has trained (`done`) and made the
        next observation: the observation checked, the episode's end, the reward and the
        info (`patchenv.env.outcome`, for one run), as Gymnasium's 5-tuple.

        All of it is computed on the device. ``tensor_obs=False``: the observation and the
        device's numbers come to the host in one copy (the step's one sync); Python numbers
        in the 5-tuple and the info. ``tensor_obs=True``: nothing is read; the reward,
        ``terminated``, ``truncated`` and the info's measured numbers (``loss``,
        ``accuracy``, ``loss_term``, ``diverged``) are 0-d tensors on the device (``float()``
        or ``bool()`` reads one), the counts Python numbers. (A ``reward_fn`` reads the
        numbers it is given, once.)"""
        run = self.run
        rows = np.array([run.row])
        obs, diverged = outcome.settle_observations(run.obs.unsqueeze(0), rows, done.result.finite.view(1))
        run.set_observation(run.tokens, obs[0])
        steps = outcome.Steps.of(run.counters, rows, [keep], [done], diverged, self.selection == "image")
        result = outcome.outcome(steps, num_patches=self.num_patches, n_patch_desired=self.n_patch_desired,
                                 kind=self.reward_kind, weights=(self.loss_weight, self.patch_weight),
                                 episode_steps=self.episode_steps)
        if self.tensor_obs:
            obs = run.obs
            # The host knows the episode is over when its last step was taken; a divergence
            # only by reading `terminated`, kept unread for a checkpoint (`checkpoint_shell`).
            self.episode_over = bool(steps.episode_step[0] >= self.episode_steps)
            self._terminated = result.terminated[0]
        else:
            obs, result = result.on_host(run.obs)
            self.episode_over = bool(result.terminated[0] or result.truncated[0])
        # The episode's end is settled before a reward_fn can fail.
        if self.reward_fn is not None:
            result = outcome.with_rewards(result, outcome.custom_rewards(
                result, self.reward_fn, num_patches=self.num_patches, n_patch_desired=self.n_patch_desired))
        return (obs, *outcome.row_scalars(result.rewards, result.terminated, result.truncated, 0),
                outcome.row_info(result.info, 0))

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() was called without a render_mode; build the env with render_mode='rgb_array'")
            return None
        run = self.run
        if run.model is None:
            raise gym.error.ResetNeeded("call reset() before render(): there is no batch yet")
        images, keep = run.rendered if run.rendered is not None else (run.batch_x[:render_mod.IMAGES], None)
        unit = images * self.setup.std + self.setup.mean  # denormalised to [0, 1]
        return render_mod.frame(unit, keep, self.config.patch_size)

    def __getstate__(self):
        raise TypeError("a PatchSelectionEnv holds a live training run and cannot be pickled or deep-copied; "
                        "use env.unwrapped.save_checkpoint(path) and load_checkpoint(path) in a new env")

    # -- what agents may read between steps -------------------------------------------------
    @property
    def pending_images(self) -> torch.Tensor:
        """The augmented, normalised batch the next ``step`` trains on, (B, C, H, W)."""
        if self.run.batch_x is None:
            raise gym.error.ResetNeeded("call reset() first: there is no pending batch")
        return self.run.batch_x

    @torch.no_grad()
    def attention_state(self, images: torch.Tensor) -> torch.Tensor:
        """The paper's state (B, N) of `images` under the ViT's current weights, on the
        device. AgentViT's s' is this, for the images just trained on."""
        model = self.run.model
        if model is None:
            raise gym.error.ResetNeeded("call reset() first: there is no ViT yet")
        with autocast(self.device, self.amp):
            return model.attention_state(model.embed(images)).float()

    def patch_credit(self) -> torch.Tensor:
        """Per-patch credit of the last training step, (B, N) float32 on the device: the
        L2 norm over D of the loss's gradient with respect to each patch token (after the
        position embedding), which the backward pass computed anyway. A dropped patch
        gets 0: it did not reach the loss. Large values mark the patches whose content
        the update depended on (what AgentViT's Q target never sees)."""
        if self.run.graphed is not None:
            raise ValueError("patch_credit() needs the eager training step; this env replays a CUDA graph "
                             "(cuda_graph=True), which keeps no token gradients")
        if self.run.credit is None:
            raise gym.error.ResetNeeded("patch_credit() describes the last training step: call step() first")
        grad, keep = self.run.credit
        credit = grad.float().norm(dim=-1)
        if keep is None:
            # The transformer gathered the kept tokens from the full (B, N, D) embedding, so
            # the gradient there is already zero at the dropped positions.
            return credit
        return place_tokens(credit, keep, self.num_patches)  # the kept tokens alone were embedded

    def evaluate(self, split: str = "test", masks: Any = None) -> dict:
        """Loss and accuracy of the current ViT on a whole split, unaugmented.

        masks=None uses every patch (the paper's protocol). Otherwise a fixed mask (N,) or
        (B, N), or a callable ``masks(obs) -> mask`` given this env's observation of each
        evaluation batch (batches of ``batch_size``; an agent's ``act`` fits here). The
        test split is the fixed subset ``eval_fraction`` keeps (all of it by default);
        ``n`` in the result counts the images evaluated. ``"val"``: the validation split
        (``val_fraction > 0``), whole; ``"train"``: the images trained on (without it).
        Changes no training state and draws no random numbers."""
        return evaluate(self.run, split, masks)

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, path: Union[str, os.PathLike]) -> None:
        """Save the whole training run (ViT, optimiser, every RNG, data order and position,
        pending batch, reward reference, counters). Written atomically: temp file + rename."""
        if self.run.model is None:
            raise gym.error.ResetNeeded("call reset() before save_checkpoint(): there is no training run yet")
        run_checkpoint.save(self.run, self.checkpoint_shell(), path)

    def sealed_checkpoint(self) -> dict:
        """The run as `save_checkpoint` writes it, in memory (a population's file holds E)."""
        return run_checkpoint.sealed(self.run, self.checkpoint_shell())

    def load_checkpoint(self, path: Union[str, os.PathLike], trust_checkpoint: bool = False):
        """Restore a run saved by `save_checkpoint`; no reset needed. Returns the pending
        observation. The env must be built with the same configuration. The file is read
        without running code from it; a checkpoint of an older format (v1), which needs
        the free unpickler, is read only with ``trust_checkpoint=True``: for files you wrote.
        A file that cannot be read is a one-line ValueError, the env unchanged."""
        state = run_checkpoint.read(self.setup, path, trust=trust_checkpoint)
        return self.restore_checkpoint(state, path)

    def checkpoint_shell(self) -> dict:
        """What this env keeps of the episode beside its run, for `run_checkpoint.sealed`."""
        over = self.episode_over or (self._terminated is not None and bool(self._terminated))  # note: a read
        return {"np_random": self.np_random.bit_generator.state, "np_random_seed": self._np_random_seed,
                "episode_over": over}

    def restore_checkpoint(self, state: dict, path) -> Any:
        """Make a checked checkpoint `state` (`run_checkpoint.read` / `unseal`) this env's
        run and episode; returns the pending observation."""
        shell = run_checkpoint.restore(self.run, state, path)
        self._np_random, self._np_random_seed = shell["np_random"], shell["np_random_seed"]
        self.episode_over, self._terminated = shell["episode_over"], None
        self._restored = True
        return self._observation()

    def _observation(self):
        return self.run.agent_view(self.run.obs)


PatchSelectionEnv.__init__.__signature__ = keyword_signature()
