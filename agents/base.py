"""``Agent``: defaults for every member of the selector contract (`patchenv.selector`).

An agent declares which observation it reads for each selection it supports
(``obs_types``; ``obs_type`` follows ``selection``), maps an observation to a keep-mask
(``act``), learns while the env trains the ViT (``train``) and saves/loads itself
through its constructor: a file holds the agent's name, ``config()`` (the constructor's
keyword arguments) and ``state_dict()``; ``load`` re-runs the constructor with that
config, then restores the state.

The default ``train`` is the plain Gymnasium loop with an ``update(transition)`` hook, so
a learning agent usually only writes ``act`` and ``update``; the loop measures the
agent's own time (``overhead_time_s``). Agents that own their loop (Stable-Baselines3)
override ``train``.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, TypeVar, Union

import numpy as np

from patchenv import checked_json
from patchenv.checks import check_seed
from patchenv.selector import SELECTIONS, Transition

FORMAT = "patchenv-agent-v1"


def check_selection(selection, supported=SELECTIONS, agent: str = "agent") -> str:
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if selection not in supported:
        raise ValueError(f"agent {agent!r} supports selection {', '.join(map(repr, supported))} only, "
                         f"got {selection!r}")
    return selection


C = TypeVar("C")


def build_config(config_class: type[C], kwargs: dict) -> C:
    """An agent's hyperparameter dataclass built from its constructor's keyword arguments.
    A name that is not one of the dataclass's fields is a one-line ValueError listing them
    (``agents.make`` puts ``agent 'NAME': `` in front); the dataclass checks the values."""
    known = [f.name for f in fields(config_class)]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {', '.join(unknown)}; expected some of {', '.join(known)}")
    return config_class(**kwargs)


def check_k(k) -> Optional[int]:
    """A patch count ``k``: an integer >= 1, or None (the env's ``n_patch_desired``). The
    upper bound, the env's N, is checked at ``setup``."""
    if k is None:
        return None
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer in [1, N] (N: the env's patch count) or None, got {k!r}")
    return int(k)


def check_k_fits(agent: str, k: Optional[int], num_patches: int) -> None:
    """``k`` against the env's N, known once an env is (``setup``)."""
    if k is not None and k > num_patches:
        raise ValueError(f"agent {agent!r}: k={k} is outside [1, {num_patches}] (the env has N={num_patches} patches)")


# probe_every for an agent that reads no probe: the env evaluates it once, at reset, and
# never again. With obs_type="progress" such an agent also lets the env's training step
# embed the kept patches only (it reads no embedding).
NO_PROBE = 1 << 40


class Agent:
    """Base class: the contract's defaults and the default Gymnasium training loop.

    Subclasses implement ``act``; learning agents implement ``update``; an agent that
    reads another observation, or supports one selection only, overrides ``obs_types``.
    ``setup(env)`` is called once an env is known, to read N, B and the env's target
    count: by the runner before the run, else by the first ``train`` (``setup_once``: an
    agent set up for an env is not set up again for it, whatever wraps it).
    """

    name: str = "agent"
    #: the observation ``act`` reads, per supported selection; the keys are the selections
    #: the agent supports. The default: the cheap pooled (N, D) state for one batch mask,
    #: the (B, N) attention state (it gives B) for per-image masks.
    obs_types: ClassVar[dict[str, str]] = {"batch": "pooled", "image": "attention"}
    #: file name suffix of what ``save`` writes
    save_suffix: str = ".json"
    selection: str = "batch"
    seed: int = 0
    #: seconds of the agent's own work in ``train`` (acting, learning); env steps excluded
    overhead_time_s: float = 0.0
    #: why a run resumed from this agent's last save would not continue bit for bit; None
    #: (the default) when its whole state is saved. The runner warns with it on resume.
    resume_caveat: Optional[str] = None
    #: set by ``setup``
    _set_up_for: Any = None  # the unwrapped env the last setup succeeded for
    num_patches: Optional[int] = None
    batch_size: Optional[int] = None
    n_patch_desired: Optional[int] = None

    def __init__(self, *, selection: str = "batch", seed: int = 0):
        self.selection = check_selection(selection, tuple(self.obs_types), self.name)
        self.seed = check_seed(seed)
        self.overhead_time_s = 0.0

    @property
    def obs_type(self) -> str:
        """The observation this agent reads: ``obs_types[selection]``."""
        return self.obs_types[self.selection]

    @obs_type.setter
    def obs_type(self, value) -> None:
        raise AttributeError(f"obs_type follows selection: declare it on the class, e.g. "
                             f"obs_types = {{'batch': {value!r}}}, instead of setting it on the agent")

    def env_kwargs(self) -> dict:
        """Keyword arguments the env needs to produce what this agent consumes."""
        return {"obs_type": self.obs_type, "selection": self.selection}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "setup" in cls.__dict__:
            cls.setup = _remembers_env(cls.__dict__["setup"])

    def setup_once(self, env) -> None:
        """``setup(env)`` unless this agent is set up for this env already (``train`` runs
        every epoch; the env's settings do not change between them)."""
        if self._set_up_for is not env.unwrapped:
            self.setup(env)

    def setup(self, env) -> None:
        u = env.unwrapped
        if u.obs_type != self.obs_type or u.selection != self.selection:
            raise ValueError(
                f"agent {self.name!r} needs obs_type={self.obs_type!r}, selection={self.selection!r}; "
                f"the env has obs_type={u.obs_type!r}, selection={u.selection!r} (build it with agent.env_kwargs())"
            )
        self.num_patches, self.batch_size, self.n_patch_desired = u.num_patches, u.batch_size, u.n_patch_desired

    def act(self, obs, explore: bool = False):
        raise NotImplementedError

    def update(self, transition: Transition) -> None:
        """Learn from one transition; the default agent does not learn."""

    def stats(self) -> dict[str, float]:
        """Scalars worth logging every step or epoch; none by default."""
        return {}

    def train(self, env, steps: int, callback: Optional[Callable[[Transition], Any]] = None) -> dict:
        """Run ``steps`` env steps, acting with exploration and calling ``update``.

        ``env.reset()`` without a seed continues the env's training run (or starts one if
        there is none), so successive calls carry on where the last stopped. A callback
        returning False stops early. Returns simple totals. The time spent outside
        ``env.reset``/``env.step`` and the callback is added to ``overhead_time_s``."""
        clock = time.perf_counter
        start, outside = clock(), 0.0

        def not_agent(fn, *args):
            nonlocal outside
            self.synchronize()  # the agent's queued device work is its time, not the env's
            t0 = clock()
            try:
                return fn(*args)
            finally:
                outside += clock() - t0

        total_reward, done_steps = 0.0, 0
        try:
            self.setup_once(env)
            obs = self.prepare_obs(not_agent(env.reset)[0])
            for _ in range(int(steps)):
                action = self.act(obs, explore=True)
                self.before_step(env, obs, action)
                next_obs, reward, terminated, truncated, info = not_agent(env.step, action)
                next_obs = self.prepare_obs(next_obs)
                transition = Transition(obs, action, reward, next_obs, terminated, truncated, info)
                self.update(transition)
                total_reward += reward
                done_steps += 1
                if callback is not None and not_agent(callback, transition) is False:
                    break
                obs = self.prepare_obs(not_agent(env.reset)[0]) if (terminated or truncated) else next_obs
        finally:
            self.synchronize()
            self.overhead_time_s += clock() - start - outside
        return {"steps": done_steps, "reward": total_reward}

    # -- hooks of the default loop (no-ops by default) ------------------------------------
    def prepare_obs(self, obs):
        """Convert an observation as the env returns it into what ``act``/``update`` use
        (a GPU agent turns numpy into a device tensor here). Identity by default."""
        return obs

    def before_step(self, env, obs, action) -> None:
        """Called right before ``env.step(action)``: the last moment the env still holds
        batch t (the paper's DQN reads the images it is about to train on here)."""

    def synchronize(self) -> None:
        """Wait for the agent's queued device work, so the loop's clock reads finished work
        (a CUDA agent calls ``torch.cuda.synchronize``). Nothing to wait for by default."""

    # -- persistence: name + constructor config + state ------------------------------------
    def config(self) -> dict:
        """The constructor's keyword arguments that rebuild this agent (JSON values)."""
        return {"selection": self.selection, "seed": self.seed}

    def state_dict(self) -> dict:
        """What the constructor does not rebuild: RNG states, counters, weights."""
        return {"overhead_time_s": self.overhead_time_s}

    def load_state_dict(self, state: dict) -> None:
        self.overhead_time_s = float(state.get("overhead_time_s", 0.0))

    def save(self, path: Union[str, os.PathLike]) -> None:
        """One JSON file: ``{"format", "agent", "config", "state"}`` and its checksum
        (`patchenv.checked_json`), written atomically."""
        checked_json.write(path, {"format": FORMAT, "agent": self.name, "config": self.config(),
                                  "state": self.state_dict()})

    def load(self, path: Union[str, os.PathLike], trust_checkpoint: bool = False) -> "Agent":
        """Become the agent saved at `path`: the constructor re-runs with the saved config,
        then the saved state is restored. Returns self. No file is read by unpickling it,
        except, with ``trust_checkpoint=True``, one an older patchenv wrote that needs it
        (the ``ppo`` agent's)."""
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not an agent file")
        if path.is_file() and path.stat().st_size == 0:
            raise ValueError(f"agent file {path} is empty")
        try:
            payload = self.read_file(path, trust_checkpoint)
            name, config, state = payload["agent"], payload["config"], payload["state"]
        except FileNotFoundError:
            raise
        except Exception as e:
            raise ValueError(f"cannot read agent file {path}: {type(e).__name__}: {e}") from None
        self.rebuild(name, config, path)
        self.restore(path, state, trust_checkpoint)
        return self

    def read_file(self, path: Path, trust: bool = False) -> dict:
        """``{"agent", "config", "state"}`` as ``save`` wrote it (checked JSON here: a file
        without its checksum only if `trust`; agents with another file format override this)."""
        return checked_json.read(path, trust=trust)

    def restore(self, path: Path, state: dict, trust: bool = False) -> None:
        """The last step of ``load``, once the constructor has re-run: the saved state
        (`trust`: whether the user trusts the file, for a format that needs unpickling)."""
        self.load_state_dict(state)

    def rebuild(self, name: str, config: dict, path: Union[str, os.PathLike] = "the file") -> None:
        """Re-run the constructor with a saved `config`, after checking the file's agent
        `name` is this one."""
        if name != self.name:
            raise ValueError(f"{path} holds agent {name!r}, not {self.name!r} (load it with agents.load)")
        try:
            type(self).__init__(self, **config)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: its config does not build agent {self.name!r}: {e}") from None



def _remembers_env(setup: Callable) -> Callable:
    """`setup` that records the env it succeeded for (a failure forgets any), so that
    ``setup_once`` knows; nested ``super().setup`` calls are recorded by the outermost."""
    @functools.wraps(setup)
    def wrapper(self, env) -> None:
        try:
            setup(self, env)
        except BaseException:
            self._set_up_for = None
            raise
        self._set_up_for = env.unwrapped

    return wrapper


Agent.setup = _remembers_env(Agent.setup)


class KeepsK(Agent):
    """An agent keeping ``k`` patches a step (per image with ``selection="image"``):
    ``k=None`` keeps the env's ``n_patch_desired`` (the paper's 30), or half the patches
    where the env sets none. ``random`` and the top-k heuristics; a schedule overrides
    `current_k`."""

    def __init__(self, *, k: Optional[int] = None, selection: str = "batch", seed: int = 0):
        super().__init__(selection=selection, seed=seed)
        self.k = check_k(k)

    def setup(self, env) -> None:
        super().setup(env)
        check_k_fits(self.name, self.k, self.num_patches)

    def current_k(self, n: int) -> int:
        """Patches to keep at this step, of `n`."""
        return self.k or self.n_patch_desired or n // 2

    def config(self) -> dict:
        return {"k": self.k, **super().config()}


def topk_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """0/1 int8 mask keeping the k highest scores along the last axis (ties: lower index)."""
    scores = np.asarray(scores)
    k = int(min(max(k, 1), scores.shape[-1]))
    order = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    mask = np.zeros(scores.shape, dtype=np.int8)
    np.put_along_axis(mask, order, 1, axis=-1)
    return mask
