"""AgentViT: the paper's DQN patch selector, reproduced as its official code runs.

Source: Cauteruccio et al., "Adaptive Patch Selection to Improve Vision Transformers
through Reinforcement Learning" (Applied Intelligence 2025) and its notebook
(`DavideTraini/RL-for-ViT`); `docs/AGENTVIT.md` describes what that code does.

Per ViT iteration (one env step):
1. state s = the env's ``"attention"`` observation of batch t, (B, N);
2. action: with probability eps a uniform random N-vector, else the batch mean of
   ``q_network(s)`` (B, N) -> (N,); keep patch i if its value >= the mean of the N values;
3. every ``frequency``-th batch of an epoch (counted from 1 inside the epoch, as the
   notebook's loop index is) and once ``learning_starts`` iterations have passed, store
   (s, s', r) with s' the attention state of *the same images* after the ViT update, and
   run one optimisation step on ``buffer_batch_size`` transitions sampled from the replay.

Learning, per sampled transition and image row: ``y = r + gamma * target_network(s')``
for all N outputs; SmoothL1(q_network(s), y); AdamW(lr=eta, amsgrad=True); gradient
values clipped to +-100; every ``update_every`` optimisation steps a soft update
``target <- tau * q + (1 - tau) * target``. The replay holds ``buffer_size`` transitions;
when full, a uniformly random one is evicted. Nothing is learned before
``buffer_batch_size`` transitions are stored.

The paper's quirks, kept on purpose (docs/AGENTVIT.md "Known weaknesses" 1-5; the project's
improved agents are where they get fixed, not here):
1. the Q target ignores the action: every patch's value regresses toward the same scalar
   reward, so no patch gets credit for its own effect;
2. s' is the same images one ViT step later, and there is no terminal state;
3. the reward's loss term L(ref)/L(t) rises as the ViT trains whatever the mask (it is
   the env's reward, non-stationary; see "Reward" below);
4. random exploration cuts a uniform vector at its mean and so keeps ~N/2 patches, close
   to the target of 30: random masks already score nearly optimally on the patch term;
5. one mask for the whole batch (``selection="batch"``), not one per image.

Reward: the env's, ``R = loss_weight * L(ref) / L(t) + patch_weight * (-|z - z*| / z*)``
(weights (1, 20) as the notebook's code, or the README's ``alpha``). Its reference L(ref)
is where the notebook and the env's default differ, and this agent takes the notebook's:

- the env's default (``loss_ref_step=1``, every other agent): L(ref) is the training
  loss of the run's first step;
- the notebook (and this agent): L(ref) is the training loss of the first *rewarded*
  iteration, batch ``frequency`` of epoch 1 (its ``train_loss_list`` only grows on
  rewarded steps). ``env_kwargs()`` asks the env for ``loss_ref_step=frequency``, so the
  env's reward, the one the runner logs as ``mean_reward``, is the one this agent learns
  from. The env's steps before it are their own reference (loss term 1); the agent
  never learns from them (nothing is stored in epoch 1).

One small departure, not changing what is learned: the replay overwrites the evicted
slot instead of popping it and appending (sampling is uniform over the stored set either
way). Exploration draws its masks with `patchenv.agentvit_exploration.exploration_mask`, the draw the
runner's ``test_accuracy_random_masks`` evaluates with.

Performance: the state, the replay and both networks stay on the env's device;
``env_kwargs()`` asks the env for torch observations (``tensor_obs=True``), and a numpy
observation is converted with ``torch.as_tensor``. The only host transfer is the N-long
mask the env needs on the host anyway. The default training loop (agents/base.py) adds
the wall time of the agent's own work (acting, recomputing s', learning) to
``overhead_time_s``, after `synchronize` waits for the agent's CUDA work, so benchmarks
can report it as a share of ``env.unwrapped.train_time_s``.

Saved as one ``torch.save`` file (``.pt``): ``{"format", "agent", "config", "state"}``,
the state holding both networks, the optimiser, the replay, the counters and the RNG.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.base import FORMAT, Agent, build_config
from patchenv import safe_load
from patchenv.atomic import atomic_torch_save
from patchenv.agentvit_exploration import exploration_mask
from patchenv.selector import Transition


@dataclass
class AgentViTConfig:
    """Hyperparameters under the seed README's names; defaults are the official run's."""

    buffer_size: int = 64
    """replay memory capacity (README `buffer_size`, 64); a random element is evicted when full"""
    buffer_batch_size: int = 8
    """transitions sampled from the replay per optimisation step (README `buffer_batch_size`, 8)"""
    gamma: float = 0.95
    """discount factor in y = r + gamma * Q_target(s') (README `gamma`, 0.95)"""
    eps_start: float = 1.0
    """initial exploration probability (README `eps_start`, 1)"""
    eps_end: float = 0.01
    """final exploration probability (README `eps_end`, 0.01)"""
    eps_decay: float = 20000
    """eps = eps_end + (eps_start - eps_end) * exp(-iteration / eps_decay), in ViT iterations (README `eps_decay`, 20000)"""
    eta: float = 0.01
    """AdamW(amsgrad=True) learning rate of the Q-network (README `eta`, 0.01)"""
    tau: float = 0.1
    """soft update coefficient: target <- tau * q + (1 - tau) * target (README `tau`, 0.1)"""
    update_every: int = 2
    """optimisation steps between soft updates (README `update_every`, 2)"""
    frequency: int = 50
    """every `frequency`-th batch of an epoch is rewarded and learned from (README `frequency`, 50)"""
    learning_starts: Optional[int] = None
    """ViT iterations before the first stored transition; None = one epoch (the paper stores nothing in epoch 1)"""
    clip_value: float = 100.0
    """gradient values clipped to +-clip_value (the notebook's clip_grad_value_(..., 100))"""
    device: str = "auto"
    """where the networks and the replay live; "auto" = the env's device"""
    selection: str = "batch"
    """one mask per batch, as in the paper (the only selection this agent supports)"""
    seed: int = 0
    """seeds the Q-network initialisation, exploration and replay sampling"""

    def __post_init__(self):
        for name in ("buffer_size", "buffer_batch_size", "update_every", "frequency"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.buffer_batch_size > self.buffer_size:
            raise ValueError(f"buffer_batch_size ({self.buffer_batch_size}) cannot exceed buffer_size ({self.buffer_size})")
        if self.learning_starts is not None and (not isinstance(self.learning_starts, (int, np.integer))
                                                 or self.learning_starts < 0):
            raise ValueError(f"learning_starts must be a non-negative integer or None, got {self.learning_starts!r}")
        for name, lo, hi in (("gamma", 0.0, 1.0), ("eps_start", 0.0, 1.0), ("eps_end", 0.0, 1.0), ("tau", 0.0, 1.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and lo <= value <= hi):
                raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
        for name in ("eps_decay", "eta", "clip_value"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")


PAPER_NUM_PATCHES = 64  # 32x32 images in 4x4 patches


def q_network(num_patches: int) -> nn.Sequential:
    """The paper's Q-network: N -> 1024 -> ReLU -> 256 -> ReLU -> N, one value per patch."""
    return nn.Sequential(
        nn.Linear(num_patches, 1024), nn.ReLU(),
        nn.Linear(1024, 256), nn.ReLU(),
        nn.Linear(256, num_patches),
    )


def epsilon(iteration: int, eps_start: float, eps_end: float, eps_decay: float) -> float:
    """The notebook's schedule; `iteration` = ViT iterations done before this one."""
    return eps_end + (eps_start - eps_end) * math.exp(-iteration / eps_decay)


class AgentViT(Agent):
    """The paper's DQN (module docstring). ``agents.make("agentvit", **hyperparameters)``
    with the fields of `AgentViTConfig` as keywords."""

    name = "agentvit"
    obs_types = {"batch": "attention"}  # the paper's (B, N) state; one mask per batch only
    save_suffix = ".pt"

    def __init__(self, **hyperparameters):
        self.hp = build_config(AgentViTConfig, hyperparameters)
        super().__init__(selection=self.hp.selection, seed=self.hp.seed)
        self.device: Optional[torch.device] = None
        self.q_network: Optional[nn.Module] = None
        self.target_network: Optional[nn.Module] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self._rng = np.random.default_rng(self.hp.seed)
        # Replay (on the device): states and next states (capacity, B, N), rewards (capacity,).
        self._states: Optional[torch.Tensor] = None
        self._next_states: Optional[torch.Tensor] = None
        self._rewards: Optional[torch.Tensor] = None
        self.replay_size = 0
        self.iteration = 0  # ViT iterations this agent has trained through (drives eps)
        self.updates = 0  # optimisation steps of the Q-network
        self._since_soft_update = 0  # the notebook's `step` counter
        self.learning_starts: Optional[int] = self.hp.learning_starts
        self._last_loss_t: Optional[torch.Tensor] = None  # kept on the device: no sync per step
        self._pending = None  # (s, images of batch t) while a rewarded step is in flight
        # The networks exist from the start, for the paper's N = 64 patches, so they can be
        # inspected before training; setup(env) rebuilds an untrained agent for another N,
        # sizes the replay with the env's batch size and moves everything to its device.
        self._build(PAPER_NUM_PATCHES, None, torch.device("cpu" if self.hp.device == "auto" else self.hp.device))

    # -- what the env must produce -------------------------------------------------------
    def env_kwargs(self) -> dict:
        """The paper's state as torch tensors on the env's device (no host copy), and the
        notebook's reward reference: the loss of the first rewarded batch (``frequency``)."""
        return {"obs_type": self.obs_type, "selection": self.selection, "tensor_obs": True,
                "loss_ref_step": self.hp.frequency}

    def config(self) -> dict:
        return asdict(self.hp)

    def epsilon(self, iteration: Optional[int] = None) -> float:
        """Exploration probability at `iteration` (default: the agent's current one)."""
        it = self.iteration if iteration is None else iteration
        return epsilon(it, self.hp.eps_start, self.hp.eps_end, self.hp.eps_decay)

    def setup(self, env) -> None:
        super().setup(env)
        u = env.unwrapped
        if u.loss_ref_step != self.hp.frequency:
            raise ValueError(f"agent 'agentvit' needs the notebook's reward reference, loss_ref_step={self.hp.frequency} "
                             f"(its frequency); the env has loss_ref_step={u.loss_ref_step} "
                             "(build it with agent.env_kwargs())")
        device = u.device if self.hp.device == "auto" else torch.device(self.hp.device)
        if device != self.device:
            self._move(device)
        n = self.q_network[0].in_features
        b = None if self._states is None else self._states.shape[1]
        untrained = self.updates == 0 and self.replay_size == 0 and self.iteration == 0
        if n != u.num_patches or b is None:
            if n != u.num_patches and not untrained:
                raise ValueError(f"this agent was trained for N={n} patches but the env has N={u.num_patches}")
            self._build(u.num_patches, u.batch_size, device, keep_networks=(n == u.num_patches))
        elif b != u.batch_size:
            raise ValueError(f"this agent's replay holds batches of B={b} images but the env has B={u.batch_size}")
        if self.hp.learning_starts is None and self.learning_starts is None:
            self.learning_starts = u.steps_per_epoch  # the paper: nothing stored in epoch 1
        if self.hp.frequency > u.steps_per_epoch and not getattr(self, "_warned_frequency", False):
            self._warned_frequency = True  # say it once, whatever env it is set up for
            warnings.warn(f"frequency={self.hp.frequency} exceeds the {u.steps_per_epoch} batches of an epoch: "
                          "as in the paper (the count restarts every epoch), the agent will never learn", stacklevel=2)

    # -- acting -----------------------------------------------------------------------------
    def prepare_obs(self, obs):
        return self._as_state(obs)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # note: sync point, so overhead_time_s holds the agent's GPU work

    def act(self, obs, explore: bool = False) -> np.ndarray:
        """(B, N) attention state (numpy or torch) -> int8 mask (N,) for the env."""
        n = self.q_network[0].in_features
        if explore and self._rng.random() < self.epsilon():
            mask = exploration_mask(self._rng, n)  # the notebook's MultiContinue.sample() cut at its mean
        else:
            state = self._as_state(obs)
            if state.dim() == 1:
                state = state.unsqueeze(0)
            with torch.no_grad():
                values = self.q_network(state).mean(dim=0)  # batch mean of the Q-values, (N,)
                keep = values >= values.mean()
            # note: CPU-GPU sync point; the env needs the mask on the host to size the sequence.
            mask = keep.to(torch.int8).cpu().numpy()
            if not mask.any():  # only with non-finite Q-values; the env rejects an empty mask
                mask[:] = 1
        return mask

    # -- learning (hooks of the default loop in agents/base.py) -----------------------------
    def before_step(self, env, obs, action) -> None:
        u = env.unwrapped
        in_epoch = u.global_step % u.steps_per_epoch + 1  # the notebook's 1-based batch index
        self._pending = None
        if in_epoch % self.hp.frequency == 0 and self.iteration >= self.learning_starts:
            # The paper's s' is the attention state of the SAME images after the ViT update,
            # so keep a reference to batch t now: env.step replaces pending_images with batch t+1.
            # (No copy: the env assigns a new tensor for each batch.)
            self._pending = (obs, u.pending_images, u)

    def update(self, transition: Transition) -> None:
        self.iteration += 1
        if self._pending is None:
            return
        state, images, u = self._pending
        self._pending = None
        if not transition.info.get("diverged", False):  # a diverged step changed nothing to learn from
            self.store(state, self._state_after_update(u, images), transition.reward)
            self.learn()

    @staticmethod
    def _state_after_update(u, images: torch.Tensor) -> torch.Tensor:
        """s': the attention state of batch t's images with the weights after the step."""
        return u.attention_state(images)  # (B, N)

    def store(self, state, next_state, reward: float) -> None:
        """Add (s, s', r) to the replay; when full, overwrite a uniformly random slot."""
        if self.replay_size < self.hp.buffer_size:
            slot = self.replay_size
            self.replay_size += 1
        else:
            slot = int(self._rng.integers(self.replay_size))
        self._states[slot] = self._as_state(state)
        self._next_states[slot] = self._as_state(next_state)
        self._rewards[slot] = float(reward)

    def td_loss(self, states: torch.Tensor, next_states: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """The paper's loss on K transitions: states, next_states (K, B, N), rewards (K,).

        Every image row of a transition is a sample with the same reward; the target
        ``r + gamma * Q_target(s')`` covers all N outputs (no action index, no max)."""
        n = states.shape[-1]
        q = self.q_network(states.reshape(-1, n))  # (K*B, N)
        with torch.no_grad():
            r = rewards.repeat_interleave(states[0].numel() // n).unsqueeze(1)  # (K*B, 1)
            target = r + self.hp.gamma * self.target_network(next_states.reshape(-1, n))
        return F.smooth_l1_loss(q, target)

    def learn(self) -> Optional[torch.Tensor]:
        """One optimisation step on a replay sample; None while the replay holds fewer
        than ``buffer_batch_size`` transitions. Returns the loss (a device tensor)."""
        if self.replay_size < self.hp.buffer_batch_size:
            return None
        idx = self._rng.choice(self.replay_size, size=self.hp.buffer_batch_size, replace=False)  # random.sample
        idx = torch.as_tensor(idx, device=self.device)
        loss = self.td_loss(self._states[idx], self._next_states[idx], self._rewards[idx])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_value_(self.q_network.parameters(), self.hp.clip_value)
        self.optimizer.step()
        self.updates += 1
        self._since_soft_update += 1
        if self._since_soft_update == self.hp.update_every:
            self.soft_update()
            self._since_soft_update = 0
        self._last_loss_t = loss.detach()
        return self._last_loss_t

    @torch.no_grad()
    def soft_update(self) -> None:
        """target <- q * tau + target * (1 - tau), parameter by parameter."""
        tau = self.hp.tau
        for p_t, p in zip(self.target_network.parameters(), self.q_network.parameters()):
            p_t.copy_(p * tau + p_t * (1 - tau))

    def stats(self) -> dict[str, float]:
        """Counters for logs; ``td_loss`` (the last optimisation step's, once there is one)
        is a CPU-GPU sync point."""
        out = {"iteration": self.iteration, "epsilon": self.epsilon(), "updates": self.updates,
               "replay_size": self.replay_size}
        if self._last_loss_t is not None:
            out["td_loss"] = float(self._last_loss_t)  # note: CPU-GPU sync point
        return out

    # -- persistence: one torch file, {"format", "agent", "config", "state"} ------------------
    def save(self, path: Union[str, os.PathLike]) -> None:
        """Networks, optimiser, replay, counters and RNG state; atomically (temp + rename)."""
        atomic_torch_save({"format": FORMAT, "agent": self.name, "config": self.config(),
                           "state": self.state_dict()}, path)

    def read_file(self, path: Path, trust: bool = False) -> dict:
        """One ``torch.save`` file (weights, replay, optimiser), read without unpickling code
        and with its members' checksums checked (`patchenv.safe_load`)."""
        return safe_load.load(path, "the file")

    def state_dict(self) -> dict:
        k = self.replay_size
        return {
            **super().state_dict(),
            "num_patches": self.q_network[0].in_features,
            "batch_size": None if self._states is None else self._states.shape[1],
            "q_network": self.q_network.state_dict(),
            "target_network": self.target_network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "replay": {"states": self._states[:k], "next_states": self._next_states[:k], "rewards": self._rewards[:k]}
            if self._states is not None else None,
            "iteration": self.iteration,
            "updates": self.updates,
            "since_soft_update": self._since_soft_update,
            "learning_starts": self.learning_starts,
            "rng": self._rng.bit_generator.state,
            "last_loss": self._last_loss_t,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        device = self.device
        self._build(state["num_patches"], state["batch_size"], device)
        self.q_network.load_state_dict(state["q_network"])
        self.target_network.load_state_dict(state["target_network"])
        self.optimizer.load_state_dict(state["optimizer"])
        replay = state["replay"]
        k = 0 if replay is None else len(replay["rewards"])
        if k:
            self._states[:k] = replay["states"].to(device)
            self._next_states[:k] = replay["next_states"].to(device)
            self._rewards[:k] = replay["rewards"].to(device)
        self.replay_size = k
        self.iteration, self.updates = state["iteration"], state["updates"]
        self._since_soft_update = state["since_soft_update"]
        self.learning_starts = state["learning_starts"]
        self._rng.bit_generator.state = state["rng"]
        self._last_loss_t = None if state["last_loss"] is None else state["last_loss"].to(device)

    # -- internals -------------------------------------------------------------------------
    def _build(self, num_patches: int, batch_size: Optional[int], device: torch.device,
               keep_networks: bool = False) -> None:
        """Networks for N patches and a replay for batches of B images (None: sized at setup)."""
        self.device = torch.device(device)
        if not keep_networks:
            # Initialise from the agent's seed without touching the global torch RNG.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.hp.seed)
                q = q_network(num_patches)
            self.q_network = q.to(self.device)
            self.target_network = q_network(num_patches).to(self.device)
            self.target_network.load_state_dict(self.q_network.state_dict())
            self.target_network.requires_grad_(False)
            self.optimizer = self._make_optimizer()
        self.replay_size = 0
        if batch_size is None:
            self._states = self._next_states = self._rewards = None
            return
        shape = (self.hp.buffer_size, batch_size, num_patches)
        self._states = torch.zeros(shape, device=self.device)
        self._next_states = torch.zeros(shape, device=self.device)
        self._rewards = torch.zeros(self.hp.buffer_size, device=self.device)
        self.replay_size = 0

    def _make_optimizer(self) -> torch.optim.Optimizer:
        # The paper's AdamW(amsgrad); the fused kernel is the same update in one pass over
        # the weights (~20% cheaper per learning step on CPU here).
        return torch.optim.AdamW(self.q_network.parameters(), lr=self.hp.eta, amsgrad=True, fused=True)

    def _move(self, device: torch.device) -> None:
        opt_state = self.optimizer.state_dict()
        self.device = torch.device(device)
        self.q_network.to(self.device)
        self.target_network.to(self.device)
        self.optimizer = self._make_optimizer()
        self.optimizer.load_state_dict(opt_state)  # casts the moments to the parameters' device
        if self._states is not None:
            self._states, self._next_states, self._rewards = (
                t.to(self.device) for t in (self._states, self._next_states, self._rewards))
        if self._last_loss_t is not None:
            self._last_loss_t = self._last_loss_t.to(self.device)

    def _as_state(self, obs) -> torch.Tensor:
        if isinstance(obs, torch.Tensor):
            return obs.to(self.device, torch.float32)
        return torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)  # host -> device copy
