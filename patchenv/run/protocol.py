"""What the runner uses of an env (``env.unwrapped``): `PatchSelectionEnv` has it, and so
must any env a user hands to `run_training`."""
from __future__ import annotations

import os
from typing import Any, Optional, Protocol, Union

import torch

from patchenv.model.keep import Keep


class RunnableEnv(Protocol):
    """The members of an unwrapped env the runner reads or calls."""

    config: Any  # an EnvConfig: the runner reads ``val_fraction``
    device: torch.device
    batch_size: int
    num_patches: int
    selection: str  # "batch", "image" or "count"
    steps_per_epoch: int
    action_repeat: int  # training steps one env.step runs
    global_step: int  # training steps of the run so far
    train_time_s: float  # wall-clock of the env's steps in this run
    last_keep: Optional[Keep]  # the last step's action, parsed

    def evaluate(self, split: str = "test", masks: Any = None) -> dict: ...

    def save_checkpoint(self, path: Union[str, os.PathLike]) -> None: ...

    def load_checkpoint(self, path: Union[str, os.PathLike]) -> Any: ...  # trust_checkpoint=True: only when given
