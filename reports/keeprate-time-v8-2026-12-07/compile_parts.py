"""The bare count step (the kept patches embedded, transformer, head, cross-entropy, backward,
the env's Adam) three ways, timed interleaved at 64, 32, 16 and 8 patches kept per image
(tiny ViT, batch 64, one thread):

- ``eager``;
- ``compiled``: the embedding and the transformer compiled as one graph;
- ``compiled-transformer``: the transformer and head compiled alone (what the env's
  ``compile=True`` compiles).

    python reports/keeprate-time-v8-2026-12-07/compile_parts.py [REPEATS]

Prints each variant's median ms a step and its ratio to its own 64-patch step.
"""
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from patchenv.env.presets import PRESETS
from patchenv.model.training import make_optimizer, new_model

KS = (64, 32, 16, 8)
BATCH = 64
STEPS = 20  # steps timed together


def stepper(how: str, x: torch.Tensor, y: torch.Tensor, keeps: dict):
    vit = {k: v for k, v in PRESETS["tiny"].items() if k != "batch_size"}
    model = new_model({**vit, "image_size": 32, "patch_size": 4, "num_classes": 10, "channels": 3},
                      torch.device("cpu"), 0)
    model.train()
    optimizer = make_optimizer(model, 1e-3)
    transformer = model.forward_selected
    if how == "compiled-transformer":
        transformer = torch.compile(model.forward_selected, dynamic=True)

    def forward(images, keep):
        return transformer(*model.embed_kept(images, keep))

    if how == "compiled":
        forward = torch.compile(forward, dynamic=True)

    def step(k: int) -> None:
        loss = F.cross_entropy(forward(x, keeps[k]).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def main() -> int:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(BATCH, 3, 32, 32, generator=g), torch.randint(10, (BATCH,), generator=g)
    keeps = {k: torch.stack([torch.randperm(64, generator=g)[:k] for _ in range(BATCH)]) for k in KS}
    steps = {how: stepper(how, x, y, keeps) for how in ("eager", "compiled", "compiled-transformer")}
    start = time.perf_counter()
    for step in steps.values():
        for k in KS:
            for _ in range(5):
                step(k)
    print(f"warm-up (compiling) {time.perf_counter() - start:.1f} s", flush=True)
    times = {(how, k): [] for how in steps for k in KS}
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        for k in rng.permutation(KS):
            for how in rng.permutation(list(steps)):
                t = time.perf_counter()
                for _ in range(STEPS):
                    steps[how](int(k))
                times[(how, int(k))].append((time.perf_counter() - t) / STEPS * 1e3)
    for how in steps:
        full = np.median(times[(how, 64)])
        print(how, " ".join(f"k={k}: {np.median(times[(how, k)]):.2f} ms ({np.median(times[(how, k)]) / full:.3f})"
                            for k in KS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
