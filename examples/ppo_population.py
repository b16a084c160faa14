"""PPO on patchenv's population env, in CleanRL's style: one file, read top to bottom.

    python examples/ppo_population.py --env-id patchenv/Digits-v1 --num-envs 4 --total-timesteps 4096
    tensorboard --logdir runs

E training runs of a ViT (``gym.make_vec(..., vectorization_mode="vector_entry_point")``:
one batched model) are E copies of the env. The policy sets each run's keep rate
(``selection="count"``: action a keeps a + 1 patches of every image) from the run's
progress observation (9 numbers: how far training has got, its loss and trend, the probe).

The autoreset step. The population resets a run on the step *after* its episode ended
(Gymnasium's NEXT_STEP autoreset, as its sync vector env does): the step that ends an
episode returns the episode's last observation with terminated or truncated set; on the
next step that run ignores its action, trains nothing, gets reward 0 and returns the new
episode's first observation. Its info is the reset's: ``infos["loss"][i]`` is 0 and
``infos["_loss"][i]`` is False (Gymnasium's mask of which runs have a key; the key is
missing altogether when every run reset). So: log training numbers through the
``_loss`` mask, and keep autoreset steps out of the PPO loss (``valid`` below). An
episode (one epoch of the ViT by default) ends by truncation; the run goes on training
the same ViT, so a truncated step bootstraps from the value of its last observation.

Needs tensorboard for the logs (``pip install tensorboard``, in the ``log`` extra).
"""
from __future__ import annotations

import argparse
import random
import time
from typing import Optional, Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from torch.distributions import Categorical

import patchenv  # noqa: F401  (registers the patchenv ids)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exp-name", default="ppo_population",
                   help="the name of this experiment (part of the run folder's name)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the policy, the sampling and the ViTs (run i: seed + i)")
    p.add_argument("--torch-deterministic", action=argparse.BooleanOptionalAction, default=True,
                   help="torch.backends.cudnn.deterministic")
    p.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    p.add_argument("--log-dir", default="runs", help="TensorBoard folder; each run writes a subfolder")
    # The environment
    p.add_argument("--env-id", default="patchenv/Digits-v1", help="a patchenv id")
    p.add_argument("--preset", default="tiny", help="ViT and batch size: tiny, small or paper")
    p.add_argument("--env-device", default="auto", help="where the ViTs train: auto, cpu, cuda")
    p.add_argument("--episode-steps", type=int, default=None, help="training steps per episode (default one epoch)")
    p.add_argument("--num-envs", type=int, default=4, help="E, training runs stepped as one model")
    # The algorithm
    p.add_argument("--total-timesteps", type=int, default=4096, help="env steps of all runs together")
    p.add_argument("--num-steps", type=int, default=64, help="steps per run in each rollout")
    p.add_argument("--learning-rate", type=float, default=3e-4, help="Adam's learning rate of the policy")
    p.add_argument("--anneal-lr", action=argparse.BooleanOptionalAction, default=True,
                   help="decay the learning rate linearly to 0")
    p.add_argument("--gamma", type=float, default=0.99, help="discount factor")
    p.add_argument("--gae-lambda", type=float, default=0.95, help="lambda of generalized advantage estimation")
    p.add_argument("--num-minibatches", type=int, default=4, help="minibatches per epoch of updates")
    p.add_argument("--update-epochs", type=int, default=4, help="epochs over each rollout")
    p.add_argument("--clip-coef", type=float, default=0.2, help="PPO's surrogate clipping coefficient")
    p.add_argument("--ent-coef", type=float, default=0.01, help="entropy bonus coefficient")
    p.add_argument("--vf-coef", type=float, default=0.5, help="value loss coefficient")
    p.add_argument("--max-grad-norm", type=float, default=0.5, help="gradient clipping norm")
    args = p.parse_args(argv)
    for name in ("num_envs", "num_steps", "num_minibatches", "update_epochs", "total_timesteps", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    args.batch_size = args.num_envs * args.num_steps
    if args.batch_size % args.num_minibatches:
        p.error(f"--num-envs * --num-steps ({args.batch_size}) must be a multiple of --num-minibatches")
    args.minibatch_size = args.batch_size // args.num_minibatches
    args.num_iterations = max(1, args.total_timesteps // args.batch_size)
    return args


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int):
        super().__init__()
        self.critic = nn.Sequential(layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
                                    layer_init(nn.Linear(64, 64)), nn.Tanh(), layer_init(nn.Linear(64, 1), std=1.0))
        self.actor = nn.Sequential(layer_init(nn.Linear(obs_dim, 64)), nn.Tanh(),
                                   layer_init(nn.Linear(64, 64)), nn.Tanh(),
                                   layer_init(nn.Linear(64, n_actions), std=0.01))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def get_action_and_value(self, x: torch.Tensor, action: Optional[torch.Tensor] = None):
        probs = Categorical(logits=self.actor(x))
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)


def advantages(rewards: torch.Tensor, values: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor,
               done: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """GAE over a rollout (T, E) with NEXT_STEP autoreset: step t bootstraps from the value
    of the observation after it (values[t + 1], or next_value after the last step), which
    on a truncated step is the episode's last observation, and not on a terminated one;
    the recursion stops at the end of an episode (done), so the autoreset step after it
    (its own advantage unused) passes nothing back."""
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[0])):
        after = next_value if t == rewards.shape[0] - 1 else values[t + 1]
        delta = rewards[t] + gamma * after * (1.0 - terminated[t]) - values[t]
        adv[t] = last = delta + gamma * lam * (1.0 - done[t]) * last
    return adv


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SystemExit("this example logs to TensorBoard: pip install tensorboard") from None
    run_name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    writer = SummaryWriter(f"{args.log_dir}/{run_name}")
    table = "\n".join(f"|{k}|{v}|" for k, v in vars(args).items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")  # the policy is tiny; the ViTs train on --env-device

    envs = gym.make_vec(args.env_id, num_envs=args.num_envs, vectorization_mode="vector_entry_point",
                        preset=args.preset, selection="count", device=args.env_device,
                        episode_steps=args.episode_steps)
    assert isinstance(envs.single_action_space, gym.spaces.Discrete), "selection='count' gives Discrete(N)"
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    agent = Agent(obs_dim, int(envs.single_action_space.n)).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    T, E = args.num_steps, args.num_envs
    obs = torch.zeros((T, E, obs_dim), device=device)
    actions = torch.zeros((T, E), dtype=torch.long, device=device)
    logprobs = torch.zeros((T, E), device=device)
    rewards = torch.zeros((T, E), device=device)
    terminated = torch.zeros((T, E), device=device)
    dones = torch.zeros((T, E), device=device)
    valid = torch.zeros((T, E), device=device)  # 0 on a run's autoreset step: no action was taken
    values = torch.zeros((T, E), device=device)

    global_step, trained_steps, autoreset_steps = 0, 0, 0
    start_time = time.time()
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32, device=device).reshape(E, -1)
    resetting = np.zeros(E, dtype=bool)  # the runs whose next step is their autoreset step
    episode_return = np.zeros(E)

    for iteration in range(1, args.num_iterations + 1):
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / args.num_iterations) * args.learning_rate
        for step in range(T):
            global_step += E
            obs[step] = next_obs
            valid[step] = torch.as_tensor(~resetting, dtype=torch.float32)
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
            actions[step], logprobs[step], values[step] = action, logprob, value.flatten()
            next_obs_np, reward, term, trunc, infos = envs.step(action.cpu().numpy())
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32, device=device)
            terminated[step] = torch.as_tensor(term, dtype=torch.float32, device=device)
            dones[step] = torch.as_tensor(term | trunc, dtype=torch.float32, device=device)
            next_obs = torch.as_tensor(next_obs_np, dtype=torch.float32, device=device).reshape(E, -1)

            # Training numbers exist only for the runs that trained: "_loss" masks out the
            # runs on their autoreset step (no "loss" key when all of them were).
            trained = infos.get("_loss", np.zeros(E, dtype=bool))
            assert (trained == ~resetting).all(), "a run trains on every step but its autoreset step"
            trained_steps += int(trained.sum())
            autoreset_steps += int(resetting.sum())
            if trained.any():
                writer.add_scalar("patchenv/loss", float(infos["loss"][trained].mean()), global_step)
                writer.add_scalar("patchenv/kept", float(infos["kept"][trained].mean()), global_step)
                writer.add_scalar("patchenv/tokens", float(infos["tokens"][trained].sum()), global_step)
            episode_return += reward
            for i in np.flatnonzero(term | trunc):
                writer.add_scalar("charts/episodic_return", episode_return[i], global_step)
                episode_return[i] = 0.0
            resetting = term | trunc

        with torch.no_grad():
            adv = advantages(rewards, values, agent.get_value(next_obs).reshape(1, -1), terminated, dones,
                             args.gamma, args.gae_lambda)
            returns = adv + values

        b_obs, b_actions, b_logprobs = obs.reshape(-1, obs_dim), actions.reshape(-1), logprobs.reshape(-1)
        b_adv, b_returns = adv.reshape(-1), returns.reshape(-1)
        b_values, b_valid = values.reshape(-1), valid.reshape(-1)
        # Autoreset steps stay in the minibatches with weight 0, so every minibatch has the same size.
        n_valid = b_valid.sum().clamp(min=1.0)
        adv_mean = (b_adv * b_valid).sum() / n_valid
        adv_std = (((b_adv - adv_mean) ** 2 * b_valid).sum() / n_valid).sqrt()
        b_adv = (b_adv - adv_mean) / (adv_std + 1e-8)
        b_inds = np.arange(args.batch_size)
        clipfracs = []
        for _ in range(args.update_epochs):
            np.random.shuffle(b_inds)
            for start in range(0, args.batch_size, args.minibatch_size):
                mb = b_inds[start:start + args.minibatch_size]
                w = b_valid[mb]
                denom = w.sum().clamp(min=1.0)
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_actions[mb])
                ratio = (newlogprob - b_logprobs[mb]).exp()
                with torch.no_grad():
                    clipfracs.append(float((((ratio - 1.0).abs() > args.clip_coef).float() * w).sum() / denom))
                clipped = ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = (torch.max(-b_adv[mb] * ratio, -b_adv[mb] * clipped) * w).sum() / denom
                newvalue = newvalue.flatten()
                v_clipped = b_values[mb] + (newvalue - b_values[mb]).clamp(-args.clip_coef, args.clip_coef)
                v_loss = torch.max((newvalue - b_returns[mb]) ** 2, (v_clipped - b_returns[mb]) ** 2)
                v_loss = 0.5 * (v_loss * w).sum() / denom
                entropy_loss = (entropy * w).sum() / denom
                loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
        writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
        writer.add_scalar("losses/entropy", entropy_loss.item(), global_step)
        writer.add_scalar("losses/clipfrac", float(np.mean(clipfracs)), global_step)
        writer.add_scalar("charts/SPS", int(global_step / (time.time() - start_time)), global_step)

    # The runs' ViTs, with all patches, on the test split (the paper's protocol).
    accuracy = [r["accuracy"] for r in envs.evaluate("test")]
    for i, a in enumerate(accuracy):
        writer.add_scalar(f"test/accuracy_run{i}", a, global_step)
    print(f"{global_step} steps in {time.time() - start_time:.1f} s; test accuracy per run: "
          + ", ".join(f"{a:.3f}" for a in accuracy))
    envs.close()
    writer.close()
    return {"global_step": global_step, "trained_steps": trained_steps, "autoreset_steps": autoreset_steps,
            "test_accuracy": accuracy, "log_dir": f"{args.log_dir}/{run_name}"}


if __name__ == "__main__":
    main()
