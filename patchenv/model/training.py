"""One training update of the ViT: model + optimiser + step, shared by the env and the
benchmarks' bare step, so that "env overhead" measures only what the env adds."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from patchenv.model.cuda_graph import GraphedStep
from patchenv.model.flat_adam import FlatAdam
from patchenv.model.vit import SimpleViT, init_weights, select_tokens


def autocast(device: torch.device, amp: Optional[str], cache_enabled: bool = True):
    """bf16 autocast for ``amp="bf16"``, none for None (fp32, the paper's numerics). A CUDA
    graph capture needs ``cache_enabled=False`` (cached casts would be stale at replay)."""
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)
    return torch.autocast(device_type=device.type, enabled=False)


# The (ViT structure, device, amp) whose compiled forward this process has compiled already.
_COMPILED: set = set()


def compile_forward(model: SimpleViT, amp: Optional[str], batch_size: int) -> Callable:
    """``model.forward_selected`` compiled with dynamic shapes (the kept count varies).

    The first call for a ViT structure in a process compiles at once, on a throwaway copy's
    forward and backward (`batch_size` images of one token, then of two: dynamo specialises
    a size of 1), so that no training step's clock pays for compiling (as airbench times
    after its warm-up) and `model`'s weights and grads stay untouched. Every later model of
    the structure reuses that compilation: dynamo's cache belongs to the method's code, and
    the compiled graphs take the weights as inputs. Only the padded path (uneven per-image
    counts, a key mask) compiles at its first step."""
    compiled = torch.compile(model.forward_selected, dynamic=True)
    device = next(model.parameters()).device
    # The module tree names every layer's shape; the grid is a buffer's, so it goes in apart.
    key = (repr(model), model.num_patches, str(device), amp)
    if key not in _COMPILED:
        throwaway = copy.deepcopy(model)
        throwaway.train()
        forward = torch.compile(throwaway.forward_selected, dynamic=True)
        for k in range(1, min(2, throwaway.num_patches) + 1):
            tokens = torch.zeros(batch_size, k, throwaway.pos_embedding.shape[-1], device=device, requires_grad=True)
            with torch.enable_grad(), autocast(device, amp):  # a backward graph, as training compiles
                logits = forward(tokens, None)
            logits.float().sum().backward()
        _COMPILED.add(key)
    return compiled


def make_optimizer(model: torch.nn.Module, lr: float, capturable: bool = False) -> torch.optim.Optimizer:
    """The paper's optimiser, Adam with a constant lr. The fused kernel (CPU and CUDA) does
    the update in one pass over the weights: ~3x cheaper than the default on CPU here,
    which matters once dropping patches has made the rest of the step small. For the eager
    step it runs over one flat buffer (`FlatAdam`: the same kernel and numbers, without
    Python per parameter, ~1 ms of a 7 ms five-patch CPU step). ``capturable`` lets a CUDA
    graph record it (same kernel, same numbers; the replay pays no Python, so no buffer)."""
    if capturable:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True, capturable=True)
    return FlatAdam(model, lr)


def new_model(vit_config: dict, device: torch.device, seed: Optional[int]) -> SimpleViT:
    """A SimpleViT on `device`, its weights drawn from a generator seeded with `seed` (None:
    left for a checkpoint to fill). The constructor's own init draws from the global torch
    RNG; ours does not, so a user's global RNG stays untouched."""
    with torch.random.fork_rng(devices=[]):
        model = SimpleViT(**vit_config)
    model = model.to(device)
    if seed is not None:
        init_weights(model, torch.Generator(device).manual_seed(seed))
    return model


@dataclass
class StepResult:
    """What one update reports, as 0-d tensors on the device (nothing is read on the host
    here: the env decides when, `patchenv.env.step_values`). ``finite``: the loss and the
    gradient norm were finite; where not, the update was not applied (the fused Adam's
    ``found_inf`` skipped it on the device). ``token_grad``: dL/d(token) of the eager step
    (None when replayed from a CUDA graph): (B, N, D) when the step was given the whole
    embedding, (B, K, D) when it embedded the kept patches only, ``token_keep`` then being
    the keep that selected them (`patchenv.model.vit.place_tokens` puts them back)."""

    loss: torch.Tensor  # float32
    accuracy: torch.Tensor  # float32
    grad_norm: torch.Tensor  # float32
    finite: torch.Tensor  # bool
    token_grad: Optional[torch.Tensor] = None
    token_keep: Optional[torch.Tensor] = None


def step_unless(optimizer: torch.optim.Optimizer, found_inf: torch.Tensor) -> None:
    """``optimizer.step()`` skipped on the device where `found_inf` (0-d float32, 1.0 or
    0.0) is 1: torch's fused Adam reads it in its kernel and undoes its step count, as
    under a GradScaler. Where it is 0 the update is bit for bit the plain step's, and the
    host never waits to learn which (a CUDA graph records the same rule)."""
    if isinstance(optimizer, FlatAdam):
        optimizer.step(found_inf=found_inf)
        return
    optimizer.found_inf = found_inf  # read by the fused Adam's step, as a GradScaler sets it
    try:
        optimizer.step()
    finally:
        del optimizer.found_inf


def train_step(model: SimpleViT, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               keep: Optional[torch.Tensor], amp: Optional[str], *, tokens: Optional[torch.Tensor] = None,
               forward_selected: Optional[Callable] = None, graphed: Optional[GraphedStep] = None) -> StepResult:
    """Train `model` one step on images `x` and labels `y`, the transformer seeing only
    `keep` (`patchenv.model.keep.Keep.index`). `tokens`: the embedding of `x` with its
    autograd graph, when the caller made it already (the env's patch observations), so the
    forward work is not done twice; without it the step embeds the kept patches only
    (``model.embed_kept``). `forward_selected`: ``model.forward_selected`` compiled (the
    transformer and head on the selected tokens; the embedding and the selection stay eager,
    so the token gradients are kept either way). `graphed`: replay the whole step from a
    CUDA graph where it can.

    A non-finite loss or gradient skips the update on the device (the CUDA graph does the
    same inside); nothing of the device's data is read on the host."""
    if not model.training:  # train() walks every submodule: ~0.3 ms a call on the tiny ViT's CPU step
        model.train()
    replayed = None if graphed is None else graphed(x, y, keep)
    if replayed is not None:  # the whole step replayed from a CUDA graph (the update is in it)
        loss, correct, grad_norm = replayed.unbind()
        return StepResult(loss, correct, grad_norm, torch.isfinite(loss) & torch.isfinite(grad_norm))
    token_keep = None
    with autocast(x.device, amp):
        if tokens is not None:
            selected = select_tokens(tokens, keep)
        else:
            tokens, key_mask = model.embed_kept(x, keep)
            token_keep = keep
            selected = tokens, key_mask
        logits = (forward_selected or model.forward_selected)(*selected)
        loss = F.cross_entropy(logits.float(), y)
    tokens.retain_grad()  # the backward pass computes dL/d(token) anyway: keep it for patch_credit()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = (optimizer.grad_norm() if isinstance(optimizer, FlatAdam)  # one reduction over one buffer
                 else torch.nn.utils.get_total_norm(
                     [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]))
    correct = (logits.argmax(dim=-1) == y).float().mean()
    loss, grad_norm = loss.detach().float(), grad_norm.float()
    finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
    step_unless(optimizer, (~finite).float())  # a non-finite update is not applied
    return StepResult(loss, correct, grad_norm, finite, tokens.grad, token_keep)
