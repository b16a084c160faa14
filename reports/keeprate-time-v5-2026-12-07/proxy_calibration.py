"""Where does evolve's proxy (12000 Fashion-MNIST training images, 4000 held out, the tiny
ViT, batch 64) settle when `all` trains on it long? One all-patch run on proxy seed SEED for
EPOCHS epochs, its held-out accuracy after each, written as JSON:

    python reports/keeprate-time-v5-2026-12-07/proxy_calibration.py 1000 40 OUT.json

--plot OUT.png A.json B.json ... draws the runs with their plateau (the mean of the last
ten epochs), the target one point below the plateaus' mean, and the first epoch each run
reaches it: how the fixed-target proxy's target, plan and budget were chosen.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from agents.evolve import env_kwargs, proxy_images
from patchenv.atomic import atomic_write, atomic_write_json

MARGIN = 0.01  # below the plateau, as fmnist-long's target is one point below its calibration runs'


def run(seed: int, epochs: int, out: Path) -> None:
    from patchenv.population import PopulationEnv

    torch.set_num_threads(1)
    pop = PopulationEnv(1, **env_kwargs(proxy_images("fashion_mnist", 12000, 4000), epochs, "cpu"))
    n = pop.runs[0].num_patches
    pop.reset(seed=[seed], options={"new_run": True})
    acc, steps, start, moving = [], 0, time.perf_counter(), np.ones(1, dtype=bool)
    while len(acc) < epochs:
        _, _, _, truncated, _ = pop.step_runs([n - 1], moving)
        steps += 1
        if truncated[0]:  # an epoch ended: score it on the held-out images
            acc.append(float(pop.runs[0].evaluate("test")["accuracy"]))
            print(len(acc), round(acc[-1], 4), flush=True)
            pop.reset(options={"reset_mask": truncated})
    pop.close()
    atomic_write_json(out, {"seed": seed, "epochs": epochs, "steps_per_epoch": steps // epochs, "accuracy": acc,
                            "time_s": round(time.perf_counter() - start, 1), "torch_threads": 1})


def plot(out: Path, files: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(f.read_text()) for f in files]
    plateaus = [float(np.mean(r["accuracy"][-10:])) for r in runs]
    target = float(np.mean(plateaus)) - MARGIN
    fig, ax = plt.subplots(figsize=(7, 4))
    for r, plateau in zip(runs, plateaus):
        acc = np.array(r["accuracy"])
        first = int(np.argmax(acc >= target)) + 1 if (acc >= target).any() else None
        ax.plot(np.arange(1, len(acc) + 1), acc, ".-", label=f"seed {r['seed']}: plateau {plateau:.4f}, "
                                                            f"first at the target: epoch {first}")
    ax.axhline(target, color="black", ls="--", lw=1, label=f"target {target:.4f} (plateaus' mean - {MARGIN})")
    ax.set(xlabel="epoch (178 steps)", ylabel="held-out accuracy (4000 images)", ylim=(0.6, 0.83),
           title="all on evolve's proxy, trained long")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    print(f"plateaus {[round(p, 4) for p in plateaus]}, target {target:.4f}")


if __name__ == "__main__":
    if sys.argv[1] == "--plot":
        plot(Path(sys.argv[2]), [Path(f) for f in sys.argv[3:]])
    else:
        run(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
