"""PopulationEnv: E independent training runs of PatchSelectionEnv stepped as one model.

``gym.make_vec("patchenv/Digits-v1", num_envs=E, vectorization_mode="vector_entry_point")``
builds it (every patchenv id registers it as its ``vector_entry_point``). What it is:

- **E runs** (``env.runs``: `PatchSelectionEnv` shells, each around its `TrainingRun`,
  all over one `RunSetup`, so the data set is on the device once) keep everything a run
  is made of: its ``np_random`` (run i is the single env reset with seed + i, as
  ``make_vec``'s sync mode does), data order and augmentation generator, pending batch,
  counters, reward reference, progress statistics, episode. Every rule of a step is the
  single env's code, run for all training runs at once on arrays with a leading E
  (`training_run.record_steps`: counters and statistics, rows of ``env.counters`` and
  ``env.progress``; `patchenv.env.outcome`: episode ends, rewards, info).
- **one stacked model** (`patchenv.model.stacked.StackedViT`, `StackedAdam`) holds their
  weights and optimiser state with a leading dimension E. A step embeds all pending
  batches, runs the transformer, backward and Adam once for all runs; each run's ViT
  (``env.runs[i].model``) is a view of its row, so evaluation, the probe, rendering and
  checkpoints read it without a copy. Do not step ``env.runs[i]`` yourself: its weights
  take no gradient there.

Gymnasium's vector conventions: actions stacked on a leading E (``selection="batch"``:
(E, N) masks, ``"image"``: (E, B, N), ``"count"``: (E,) integers), observations stacked,
rewards, terminations and truncations (E,) arrays, ``info`` a dict of (E,) arrays with
``_key`` masks. Autoreset is ``NEXT_STEP``: the step after a run's episode ends resets that
run (``reset()`` without a seed: the run continues, as a single env's does) and does not
train it (reward 0). ``reset(options={"reset_mask": m})`` resets the runs where m is True.

A run whose loss or gradient is not finite skips its own update and ends its own
episode; the others' numbers are bit for bit those of a population in which it did not
diverge, for the rest of that episode (docs/population.md, "Isolation").
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from patchenv.arrays import set_rows, to_device, to_numpy
from patchenv.env import outcome, run_checkpoint
from patchenv.env.config import EnvConfig
from patchenv.env.counters import RunCounters
from patchenv.env.device import resolve_device
from patchenv.env.patch_selection import PatchSelectionEnv
from patchenv.env.presets import with_preset
from patchenv.env.progress import ProgressTracker
from patchenv.env.training_run import observation, progress_vectors, record_steps
from patchenv.env.run_setup import RunSetup
from patchenv.model.stacked import StackedViT
from patchenv.model.stacked_adam import StackedAdam
from patchenv.model.training import autocast
from patchenv.population import population_checkpoint
from patchenv.population.batches import advance_all
from patchenv.population.keeps import join, parse_actions, restart_counts
from patchenv.population.graphs import PopulationGraphs
from patchenv.population.training import population_step, step_results
from patchenv.timing import DeviceTimer, SecondsSum


class PopulationEnv(VectorEnv):
    """E training runs of `PatchSelectionEnv` as one batched model (module docstring).

    Arguments: ``num_envs`` (E >= 1) and the keywords of `PatchSelectionEnv` (``preset``
    and the `EnvConfig` fields), shared by every run. Not supported here (a one-line
    ValueError): ``compile=True``, ``action_repeat > 1``, and ``cuda_graph=True`` off CUDA.
    ``cuda_graph=True`` on CUDA replays the step from CUDA graphs, one per shape of the
    token selection (`patchenv.population.graphs`); ``None`` (the default) and ``False``
    step eagerly.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, num_envs: int = 1, *, preset: Optional[str] = None, **kwargs: Any):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        for name, allowed in (("compile", (False,)), ("action_repeat", (1,))):
            if kwargs.get(name, allowed[0]) not in allowed:
                raise ValueError(f"PopulationEnv does not support {name}={kwargs[name]!r}: a population steps its "
                                 f"runs as one model, one training step per step (use the single env)")
        cfg = EnvConfig(**with_preset(preset, kwargs))  # checks every setting once, before any data loads
        if cfg.cuda_graph and resolve_device(cfg.device).type != "cuda":
            raise ValueError(f"PopulationEnv does not support cuda_graph=True on {resolve_device(cfg.device)}: "
                             f"CUDA graphs need a CUDA device (cuda_graph=False steps eagerly)")
        # One setup for every run: the data set, its splits and the probe on the device once.
        self.setup = RunSetup(EnvConfig(**with_preset(preset, {**kwargs, "cuda_graph": False})))
        # The runs' counters (epoch, steps, L(ref)) and progress statistics as arrays: each
        # step counts them for all training runs at once.
        self.counters = RunCounters(int(num_envs), self.setup.device)
        self.progress = ProgressTracker(self.setup.num_patches, int(num_envs), self.setup.device)
        self.runs: tuple[PatchSelectionEnv, ...] = tuple(
            PatchSelectionEnv.around(self.setup, self.counters, self.progress, i) for i in range(int(num_envs)))
        first = self.runs[0]
        self.config = cfg
        self.num_envs = int(num_envs)
        self.device = first.device
        self.render_mode = cfg.render_mode
        self.single_action_space = first.action_space
        self.single_observation_space = first.observation_space
        self.action_space = batch_space(first.action_space, self.num_envs)
        self.observation_space = batch_space(first.observation_space, self.num_envs)
        self.stacked = StackedViT(first.vit_config, self.num_envs, self.device)
        self.adam = StackedAdam(self.stacked.flat, first.lr)
        self._models = [self.stacked.member_model(i) for i in range(self.num_envs)]
        self._optimizers = [self.adam.member_optimizer(i, self._models[i], self.stacked.names)
                            for i in range(self.num_envs)]
        # The step's CUDA graphs (cuda_graph=True), one per shape (``graphs.shapes``).
        self.graphs = (PopulationGraphs(self.stacked, self.adam,
                                         lambda: autocast(self.device, cfg.amp, cache_enabled=False))
                        if cfg.cuda_graph else None)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._clock = DeviceTimer(self.device, sync_start=False)  # a step waits for nothing, its clock included
        self._weights: Optional[dict] = None  # per-parameter views of the stacked weights, with their graph
        self._images: Optional[torch.Tensor] = None  # (E, B, C, H, W) the pending batches
        self._tokens: Optional[torch.Tensor] = None  # (E, B, N, D) their embedding
        self._obs: Optional[torch.Tensor] = None  # (E, ...) the stacked observation, on the device
        self.last_step_tokens = 0  # token slots the population's transformer ran on in the last step (padding incl.)
        self.time = SecondsSum()  # wall clock of step() since the first reset (the runs' clocks are each this)

    # -- Gymnasium's VectorEnv API -----------------------------------------------------
    def reset(self, *, seed: Union[int, Sequence[Optional[int]], None] = None, options: Optional[dict] = None):
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(to_numpy(mask), dtype=bool)
        if mask.shape != (self.num_envs,):
            raise ValueError(f"options['reset_mask'] must be {self.num_envs} booleans, got shape {mask.shape}")
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed must be an integer, None or {self.num_envs} seeds (one per run), "
                                 f"got {len(seeds)}")
        bad = [(i, x) for i, x in enumerate(seeds) if x is not None and (
            isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or x < 0)]
        if bad:  # checked before any run resets
            raise ValueError(f"seed of run {bad[0][0]} must be a non-negative integer or None, got {bad[0][1]!r}")
        if not any(run.model is not None for run in self.runs) and not mask.all():
            raise ValueError("the first reset() starts every run: options['reset_mask'] must be all True")
        infos: dict = {}
        for i in np.flatnonzero(mask):
            _, info = self.runs[i].reset(seed=seeds[i], options=options)
            self._adopt(i)
            infos = self._add_info(infos, info, i)
        self._autoreset[mask] = False
        self._observe()
        return self._agent_obs(), infos

    def step(self, actions):
        if any(run.model is None for run in self.runs):
            raise gym.error.ResetNeeded("call reset() before step(): there are no training runs yet")
        return self.step_moving(self._split(actions))

    def step_runs(self, actions: Sequence, moving: Optional[np.ndarray] = None) -> tuple:
        """`step` for the runs where `moving` (E,) is True (default: all), the others
        standing still (not trained, nothing drawn; their `actions` entries are ignored).
        Returns (obs, rewards, terminated, truncated) as (E,) arrays (as `step`: numpy, or
        tensors on the device with ``tensor_obs=True``) and a list of E single-env info
        dicts (empty for runs that did not move)."""
        obs, rewards, terminated, truncated, infos = self.step_moving(actions, moving)
        return obs, rewards, terminated, truncated, [outcome.row_info(infos, i) for i in range(self.num_envs)]

    def step_moving(self, actions: Sequence, moving: Optional[np.ndarray] = None) -> tuple:
        """`step_runs` with the info as `step` gives it: arrays (E, ...) with ``_key``
        masks (the runs that moved), made in one piece.

        Host reads: ``tensor_obs=False``: one (the observations and every number, in one
        copy). ``tensor_obs=True``: one, of which runs' episodes ended (terminated or
        truncated: a divergence is known on the device only), since the next step's
        autoresets are the host's to do; the rewards, ends and the info's measured numbers
        stay tensors on the device. It comes last, once the next batches and observations
        are queued. A probe step and a ``reward_fn`` read as a single env's do."""
        moving = np.ones(self.num_envs, dtype=bool) if moving is None else np.asarray(moving, dtype=bool)
        resetting = self._autoreset & moving
        training = moving & ~resetting
        keeps = parse_actions(actions, self.runs, training)  # every action checked before anything changes
        # A run whose episode ended before its last step diverged (outcome.episode_ends): had
        # it not, it would train now. Its slot takes the shape its action asks for, so the
        # others compute on the shapes they would have (the episode step is read before the
        # autoreset below sets it to 0; it is in the checkpoint, so a resume agrees).
        restarting = resetting & (self.counters.episode_step < self.setup.episode_steps)
        idle_counts = restart_counts(actions, self.runs, restarting)
        self._clock.start()
        infos: dict = {}
        for i in np.flatnonzero(resetting):  # next-step autoreset: the run continues, untrained
            infos = self._add_info(infos, self.runs[i].reset()[1], i)
        rows = np.flatnonzero(training)
        runs = [self.runs[i].run for i in rows]
        if len(rows):
            run0 = self.runs[0]
            index, key_mask, longest = join(keeps, run0.batch_size, run0.num_patches, self.device,
                                           idle_counts)
            y = torch.stack([shell.run.batch_y for shell in self.runs])
            results = self._train(y, index, key_mask, to_device(training, self.device))
            self.last_step_tokens = self.num_envs * run0.batch_size * longest
            updates = record_steps(runs, [keeps[i] for i in rows], [results[i] for i in rows])
            advance_all(runs)  # the next batches, loaded at once, embedded below
        self._observe()
        device = self.device
        result = outcome.Outcome(torch.zeros(self.num_envs, dtype=torch.float64, device=device),
                                 torch.zeros(self.num_envs, dtype=torch.bool, device=device),
                                 torch.zeros(self.num_envs, dtype=torch.bool, device=device), infos,
                                 torch.zeros(0, dtype=torch.float64, device=device))
        if len(rows):
            # Everything on the device: a finite update whose weights overflow gets zeros as
            # its observation, as a single env's does.
            obs, diverged = outcome.settle_observations(self._obs, rows, torch.stack([u.result.finite for u in updates]))
            self._set_observations(obs)
            steps = outcome.Steps.of(self.counters, rows, [keeps[i] for i in rows], updates, diverged,
                                     self.config.selection == "image")
            rows_result = outcome.outcome(steps, num_patches=self.setup.num_patches,
                                          n_patch_desired=self.config.n_patch_desired, kind=self.config.reward,
                                          weights=self.config.reward_weights, episode_steps=self.setup.episode_steps)
            result = self._place_rows(result, rows_result, rows)
        if self.config.tensor_obs:
            obs = self._obs
            # note: the step's one sync (after the next batches and observations are queued):
            # which runs ended decides the next step's autoresets, the host's to do.
            ended = to_numpy(result.terminated | result.truncated)
        else:
            obs, result = result.on_host(self._obs)  # note: the step's one sync, everything in one copy
            ended = result.terminated | result.truncated
        for i in rows[ended[rows]]:
            self.runs[i].episode_over = True
        error = None
        if self.config.reward_fn is not None and len(rows):
            try:  # a reward_fn's error is raised once the step is complete; the steps are applied
                rewards = outcome.custom_rewards(
                    outcome.Outcome(result.rewards[rows], result.terminated[rows], result.truncated[rows],
                                    {k: v[rows] for k, v in result.info.items() if not k.startswith("_")},
                                    result.loss_ref), self.config.reward_fn, num_patches=self.setup.num_patches,
                    n_patch_desired=self.config.n_patch_desired)
                full = np.zeros(self.num_envs)
                full[rows] = rewards
                result = outcome.with_rewards(result, full)
            except (RuntimeError, TypeError, ValueError) as e:
                error = e
        elapsed = self._clock.lap()
        self.time.add(elapsed)
        for run in runs:  # every run waited for the whole population step
            run.add_time(elapsed)
        self._autoreset[moving] = ended[moving]
        if error is not None:
            raise error
        return obs, result.rewards, result.terminated, result.truncated, result.info

    def render(self):
        """One frame per run (as Gymnasium's sync vector env): a tuple of (H, W, 3) uint8."""
        return tuple(run.render() for run in self.runs)

    def close(self, **kwargs):
        for run in self.runs:
            run.close()
        super().close(**kwargs)

    # -- beside the Gymnasium API ------------------------------------------------------
    @property
    def train_time_s(self) -> float:
        """Wall clock of step() since the first reset (note: on CUDA, waits for the last step's end)."""
        return self.time.total

    def evaluate(self, split: str = "test", masks: Any = None) -> list[dict]:
        """Each run's `PatchSelectionEnv.evaluate` (same arguments): a list of E dicts."""
        return [run.evaluate(split, masks) for run in self.runs]

    def save_checkpoint(self, path: Union[str, os.PathLike]) -> None:
        """Save every run (each in the single env's checkpoint format) in one file, atomically."""
        if any(shell.model is None for shell in self.runs):
            raise gym.error.ResetNeeded("call reset() before save_checkpoint(): there are no training runs yet")
        population_checkpoint.save(path, [shell.sealed_checkpoint() for shell in self.runs],
                                   self._autoreset.tolist(), self.train_time_s)

    def load_checkpoint(self, path: Union[str, os.PathLike], trust_checkpoint: bool = False):
        """Restore a population saved by `save_checkpoint` (same configuration and E); no
        reset needed. Returns the pending observation. Read without running code from the
        file; an older format (v1) only with ``trust_checkpoint=True`` (as the single env's
        ``load_checkpoint``). A file that cannot be read or restored is a one-line
        ValueError, with every run as it was."""
        states, autoreset, train_time_s = population_checkpoint.read(path, self.setup, self.num_envs,
                                                                     trust=trust_checkpoint)
        # Every state is checked, but a run can still refuse its state (a tensor of another
        # shape under a valid checksum): then the runs restored before it go back.
        before = [shell.sealed_checkpoint() if shell.model is not None else None for shell in self.runs]
        try:
            for i, (shell, state) in enumerate(zip(self.runs, states)):
                shell.restore_checkpoint(state, f"{path} (run {i})")
                self._adopt(i)
        except ValueError:
            for j, sealed in enumerate(before[:i]):
                if sealed is not None:
                    self.runs[j].restore_checkpoint(run_checkpoint.unseal(self.setup, sealed, "the run before"),
                                                    "the run before")
                    self._adopt(j)
            raise
        self._autoreset = np.asarray(autoreset, dtype=bool)
        self.time = SecondsSum(train_time_s)
        self._observe()
        return self._agent_obs()

    def save_run_checkpoint(self, i: int, path: Union[str, os.PathLike]) -> None:
        """Run i alone, as its single env would save it: a `PatchSelectionEnv` built with the
        same settings continues it with ``load_checkpoint``."""
        self.runs[i].save_checkpoint(path)

    def load_run_checkpoint(self, i: int, path: Union[str, os.PathLike], trust_checkpoint: bool = False):
        """Make run i the run a single env (or `save_run_checkpoint`) saved to `path`
        (``trust_checkpoint`` as in ``load_checkpoint``)."""
        self.runs[i].load_checkpoint(path, trust_checkpoint=trust_checkpoint)
        self._adopt(i)
        self._autoreset[i] = False
        self._observe()
        return self._agent_obs()[i]

    def get_attr(self, name: str) -> tuple:
        """Each run's attribute `name` (as Gymnasium's sync vector env)."""
        return tuple(getattr(run, name) for run in self.runs)

    # -- inside ------------------------------------------------------------------------
    def _adopt(self, i: int) -> None:
        """After run i built or loaded a ViT of its own (a new run, a checkpoint), move its
        weights and optimiser state into row i and give it back the aliased views."""
        run = self.runs[i].run
        if run.model is self._models[i]:
            return
        self.stacked.load_run(i, run.model)
        self.adam.load_run(i, run.optimizer, run.model, self.stacked.names)
        run.use_model(self._models[i], self._optimizers[i])

    def _train(self, y: torch.Tensor, index: Optional[torch.Tensor], key_mask: Optional[torch.Tensor],
               training: torch.Tensor) -> list:
        """The training step of the runs where `training`: replayed from a CUDA graph where
        there is one, else eagerly on the observation's embedding (made again, with its
        autograd graph, where the observation was made without one)."""
        replayed = None if self.graphs is None else self.graphs(self._images, y, index, key_mask, training)
        if replayed is not None:
            return step_results(*replayed)
        weights, tokens = self._weights, self._tokens
        if not tokens.requires_grad:
            weights = self.stacked.weights()
            with autocast(self.device, self.config.amp):
                tokens = self.stacked.embed(weights, self._images)
        return population_step(self.stacked, self.adam, weights, tokens, y, index, key_mask, self.config.amp,
                               training)

    def _observe(self) -> None:
        """Embed every run's pending batch at once (keeping the graph for the training
        step, as a single env does, unless a CUDA graph embeds them again) and make the
        stacked observation."""
        self._weights = w = self.stacked.weights()
        self._images = x = torch.stack([shell.run.batch_x for shell in self.runs])
        with autocast(self.device, self.config.amp), torch.set_grad_enabled(self.graphs is None):
            self._tokens = tokens = self.stacked.embed(w, x)  # (E, B, N, D)
        self._obs = obs = observation(self.config.obs_type, tokens, lambda t: self.stacked.attention_state(w, t),
                                      lambda: progress_vectors([shell.run for shell in self.runs]),
                                      self.config.amp, self.device)
        for i, shell in enumerate(self.runs):
            shell.run.set_observation(tokens[i], obs[i])

    def _place_rows(self, result: outcome.Outcome, rows_result: outcome.Outcome, rows: np.ndarray) -> outcome.Outcome:
        """`result` (E runs; its info the autoresets') with `rows_result` (the runs at `rows`)
        placed at those rows, each info key with its ``_key`` mask (Gymnasium's vector
        info). Device tensors stay on the device."""
        infos = result.info
        for full, part in ((result.rewards, rows_result.rewards), (result.terminated, rows_result.terminated),
                           (result.truncated, rows_result.truncated)):
            set_rows(full, rows, part)
        for key, values in rows_result.info.items():
            array = infos.get(key)
            if array is None:
                array = (torch.zeros((self.num_envs, *values.shape[1:]), dtype=values.dtype, device=self.device)
                         if isinstance(values, torch.Tensor) else
                         np.zeros((self.num_envs, *values.shape[1:]), dtype=values.dtype))
            if isinstance(array, torch.Tensor):
                set_rows(array, rows, values)
            else:
                array[rows] = values
            mask = infos.get(f"_{key}", np.zeros(self.num_envs, dtype=bool))
            mask[rows] = True
            infos[key], infos[f"_{key}"] = array, mask
        return outcome.Outcome(result.rewards, result.terminated, result.truncated, infos, rows_result.loss_ref)

    def _set_observations(self, obs: torch.Tensor) -> None:
        """`obs` (E, ...) is the pending observation of every run (row i run i's)."""
        self._obs = obs
        for i, shell in enumerate(self.runs):
            shell.run.set_observation(shell.run.tokens, obs[i])

    def _agent_obs(self):
        return self._obs if self.config.tensor_obs else to_numpy(self._obs)

    def _split(self, actions) -> list:
        """The E runs' actions, row by row (one device-to-host copy for a tensor)."""
        what = {"batch": "(E, N) masks", "image": "(E, B, N) masks", "count": "(E,) integers"}[self.config.selection]
        if isinstance(actions, torch.Tensor):
            actions = to_numpy(actions)  # note: sync; the masks decide the sequence length
        try:
            rows = len(actions)
        except TypeError:
            raise TypeError(f"actions must hold one action per run, {what} with E = {self.num_envs}; "
                            f"got {type(actions).__name__}") from None
        if rows != self.num_envs:
            raise ValueError(f"actions must hold one action per run, {what} with E = {self.num_envs}; got {rows}")
        return [actions[i] for i in range(self.num_envs)]
