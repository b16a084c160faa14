"""Vector envs: Gymnasium's async vector env and SB3's SubprocVecEnv fork their workers from
a parent that has run torch on several threads; the workers must not deadlock, and each
must train exactly as a single env with the same seed does.

The checks run in a fresh interpreter (the parent needs multi-threaded torch, which the
suite's conftest turns off) under a timeout, so a regression fails instead of hanging."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tiny_env import TINY

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import torch
    import gymnasium as gym
    import patchenv  # registers the ids

    kwargs = json.loads(sys.argv[1])
    torch.set_num_threads(2)  # what hung: the parent's multi-threaded torch, then fork
    mask = np.zeros(64, dtype=np.int8)
    mask[::2] = 1  # 32 of 64 patches, the same for every env

    out = {}
    envs = gym.make_vec("patchenv/Digits-v1", num_envs=2, vectorization_mode="async", **kwargs)
    obs, _ = envs.reset(seed=0)  # sub-env i is seeded with i
    obs2, reward, terminated, truncated, info = envs.step(np.stack([mask, mask]))
    envs.close()
    out["gym"] = {"obs": obs.tolist(), "obs2": obs2.tolist(), "reward": reward.tolist(),
                  "loss": info["loss"].tolist()}

    from stable_baselines3.common.vec_env import SubprocVecEnv
    venv = SubprocVecEnv([lambda: gym.make("patchenv/Digits-v1", **kwargs)] * 2, start_method="fork")
    venv.seed(0)
    obs = venv.reset()
    obs2, reward, done, infos = venv.step(np.stack([mask, mask]))
    venv.close()
    out["sb3"] = {"obs": obs.tolist(), "obs2": obs2.tolist(), "reward": reward.tolist(),
                  "loss": [i["loss"] for i in infos]}

    # The same two runs as single envs in this process, on one thread as the workers were.
    torch.set_num_threads(1)
    ref = {"obs": [], "obs2": [], "reward": [], "loss": []}
    for seed in (0, 1):
        env = gym.make("patchenv/Digits-v1", **kwargs)
        o, _ = env.reset(seed=seed)
        o2, r, *_, i = env.step(mask)
        env.close()
        ref["obs"].append(o.tolist()); ref["obs2"].append(o2.tolist())
        ref["reward"].append(r); ref["loss"].append(i["loss"])
    out["single"] = ref
    print(json.dumps(out))
""")


def test_async_vector_envs_fork_from_a_multithreaded_parent():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("OMP_NUM_THREADS", None)  # let the parent really run two threads
    # its own session: on a timeout the hung workers go too, not only the parent
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(TINY)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("vector envs hung (forked workers deadlocked in torch's thread pool?)")
    assert proc.returncode == 0, stderr[-3000:]
    got = json.loads(stdout.strip().splitlines()[-1])
    single = got["single"]
    for kind in ("gym", "sb3"):
        for key in ("obs", "obs2", "reward", "loss"):
            # bit-identical: each worker is the single env with that seed, on one thread
            assert got[kind][key] == single[key], (kind, key)
    assert single["obs"][0] != single["obs"][1]  # the two workers really had their own seeds
