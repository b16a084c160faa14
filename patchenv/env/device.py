"""Where the env trains: ``device="auto"`` resolved, whether its step replays CUDA graphs
(``cuda_graph=None``: the fast path by default on CUDA), and torch kept on one thread in
forked children (Gymnasium's async vector env forks after the parent trained a ViT)."""
from __future__ import annotations

import os
from typing import Union

import gymnasium as gym
import torch

from patchenv.env.config import check_device


def _one_torch_thread_after_fork() -> None:
    """In a forked child, torch runs on one intra-op thread. The parent's OpenMP pool does
    not survive fork(): its worker threads are gone but the pool believes them alive, so a
    child that runs a parallel op (a ViT step) waits for them forever. Gymnasium's async
    vector env does exactly that: it builds one env in the parent, which trains a ViT on
    several threads, then forks its workers. With one thread torch never enters the pool."""
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):  # POSIX; subprocess's fork+exec runs no Python hooks
    os.register_at_fork(after_in_child=_one_torch_thread_after_fork)


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    """"auto" -> CUDA when present, else the CPU; raises a ValueError for anything but a
    CPU or an available CUDA device."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available; use 'auto' or 'cpu'")
    return dev


def use_cuda_graph(cfg, device: torch.device) -> bool:
    """Whether the env's training step replays CUDA graphs. ``cuda_graph=None`` (the
    default): on a CUDA device, yes, unless ``compile=True`` asks for the other way to cut
    the launch cost (said in one line); on the CPU, no (graphs are CUDA's). ``True`` needs
    CUDA; ``False`` is the eager step everywhere."""
    if cfg.cuda_graph is None:
        if device.type == "cuda" and cfg.compile:
            gym.logger.warn("cuda_graph=None on CUDA with compile=True: eager steps, compiled (the two are alternatives)")
        return device.type == "cuda" and not cfg.compile
    if cfg.cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs a CUDA device; this env runs on {device}")
    return cfg.cuda_graph
