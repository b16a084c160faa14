"""A fresh training run for the env: a ViT, its optimiser, the step functions and the data
generator, built apart from the env first (`run_parts`), so that `load_checkpoint` can fill
them and check the file before the running run changes."""
from __future__ import annotations

from typing import Optional

import torch

from patchenv.env.batches import load_batch, new_epoch_order, run_probe
from patchenv.model.cuda_graph import GraphedStep
from patchenv.model.training import autocast, make_optimizer, new_model


def run_parts(env, model_seed: Optional[int]) -> dict:
    """A ViT (weights from `model_seed`; None: for a checkpoint to fill), its optimiser, the
    step functions and a data generator, not yet the env's."""
    model = new_model(env.vit_config, env.device, model_seed)
    optimizer = make_optimizer(model, env.lr, capturable=env.cuda_graph)
    forward_tokens = torch.compile(model.forward_tokens, dynamic=True) if env.compile else model.forward_tokens
    graphed = None
    if env.cuda_graph:
        b, c, s = env.batch_size, env._data_shape["channels"], env._data_shape["image_size"]
        graphed = GraphedStep(model, optimizer, torch.empty(b, c, s, s, device=env.device),
                              torch.empty(b, dtype=torch.long, device=env.device),
                              lambda: autocast(env.device, env.amp, cache_enabled=False))
    return dict(model=model, optimizer=optimizer, forward_tokens=forward_tokens, graphed=graphed,
                data_gen=torch.Generator(env.device))


def install_run(env, parts: dict) -> None:
    env.model, env.optimizer = parts["model"], parts["optimizer"]
    env._forward_tokens, env._graphed, env._data_gen = parts["forward_tokens"], parts["graphed"], parts["data_gen"]


def new_run(env) -> None:
    """Start a fresh run from the env's ``np_random``: weights, data order, counters, probe,
    and the first pending batch."""
    model_seed, data_seed = (int(s) for s in env.np_random.integers(0, 2**62, size=2))
    install_run(env, run_parts(env, model_seed))
    env._rendered = None
    env._data_gen.manual_seed(data_seed)
    env.epoch, env.global_step, env._episode_step = 0, 0, 0
    env._loss_ref = None
    env.train_time_s = 0.0
    env.last_step_time_s = 0.0
    new_epoch_order(env)
    env._credit = None
    env._progress.reset()
    env._pending_probe_flops = 0
    if env._uses_probe:  # the untrained ViT's probe: the first observation has one
        run_probe(env)
        env._pending_probe_flops = env._probe_flops
    load_batch(env)
