"""Command line: ``patchenv train --agent NAME --dataset NAME --epochs E``."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
from tqdm import tqdm

import agents
import patchenv  # noqa: F401  (registers the envs)
from agents.base import atomic_write_text


def train(args) -> dict:
    agent = agents.make(args.agent)
    env = gym.make("patchenv/PatchSelection-v0", dataset=args.dataset, device=args.device,
                   batch_size=args.batch_size, download=args.download, **agent.env_kwargs())
    u = env.unwrapped
    env.reset(seed=args.seed)
    out = Path(args.out)
    history = []
    for epoch in range(1, args.epochs + 1):
        kept, losses = [], []
        t_before = u.train_time_s
        with tqdm(total=u.steps_per_epoch, desc=f"epoch {epoch}/{args.epochs}", leave=False) as bar:
            def on_step(tr):
                kept.append(tr.info["kept"])
                losses.append(tr.info["loss"])
                bar.update(1)
            agent.train(env, steps=u.steps_per_epoch, callback=on_step)
        ev = u.evaluate("test")
        row = {"epoch": epoch, "train_loss": sum(losses) / len(losses), "test_accuracy": ev["accuracy"],
               "mean_patches_kept": sum(kept) / len(kept), "epoch_time_s": u.train_time_s - t_before}
        history.append(row)
        print(f"epoch {epoch:3d}  train loss {row['train_loss']:.4f}  test acc {row['test_accuracy']:.4f}  "
              f"kept {row['mean_patches_kept']:.1f}  time {row['epoch_time_s']:.2f}s", flush=True)
        atomic_write_text(out / "metrics.json", json.dumps({"args": vars(args), "epochs": history}, indent=2))
    agent.save(out / "agent")
    return {"epochs": history}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="patchenv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a ViT with an agent choosing the patches")
    t.add_argument("--agent", default="all", choices=agents.available())
    t.add_argument("--dataset", default="digits")
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--device", default="auto")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--download", action="store_true")
    t.add_argument("--out", default="runs/latest")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    train(args)
    print(f"done in {time.perf_counter() - start:.1f}s; results in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
