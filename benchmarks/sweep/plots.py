"""The sweep's figures: accuracy against training time or FLOPs, and where each selector
keeps patches. One line (or heat map) per selector, per grid setting."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.common import pyplot, save_figure
from benchmarks.sweep.stats import curve_key


def series_name(r: dict) -> str:
    """A run's line (and heat map) in the figures: its selector, after its grid setting."""
    return r["selector"] if r.get("setting") is None else f"{r['setting']}: {r['selector']}"


def series_order(runs: list[dict], selectors: list[str]) -> list[str]:
    """The figures' series: settings in the order met, the selectors in the sweep's order."""
    settings = list(dict.fromkeys(r.get("setting") for r in runs)) or [None]
    named = [series_name({"selector": s, "setting": t}) for t in settings for s in selectors]
    return list(dict.fromkeys(named + [series_name(r) for r in runs]))


def plot(runs: list[dict], selectors: list[str], path: Path, title: str, x: str = "train_time_s") -> None:
    """Accuracy (%) on the curves' split against training time (or FLOPs): every seed
    faintly, the mean across seeds in bold with a band of ± one standard deviation, from
    the untrained t=0 point (chance accuracy, 1 / classes) on; beside it the same zoomed
    on the last third of training, where the selectors' curves meet."""
    plt = pyplot()
    key = curve_key(runs)
    split = key.split("_")[0]
    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    order = series_order(runs, selectors)
    ends, tails = [], []  # the zoom's window: the last third of each mean curve
    for i, name in enumerate(order):
        rs = [r for r in runs if series_name(r) == name and r["curve"]]
        if not rs:
            continue
        # matplotlib's 10 default colours would repeat beyond 10 selectors: tab20 then
        color = f"C{i}" if len(order) <= 10 else plt.get_cmap("tab20")(i % 20)
        chance = 100.0 / 10  # every data set here has 10 classes

        def series(r):
            pts = [p for p in r["curve"] if p.get(key) is not None]
            return [0.0] + [p[x] for p in pts], [chance] + [100 * p[key] for p in pts]

        n = min(len(series(r)[0]) for r in rs)
        xs = np.mean([series(r)[0][:n] for r in rs], axis=0)
        ys = np.array([series(r)[1][:n] for r in rs])
        mean, std = ys.mean(axis=0), ys.std(axis=0, ddof=1) if len(rs) > 1 else np.zeros(n)
        for axis in (ax, zoom):
            for r in rs:
                axis.plot(*series(r), color=color, alpha=0.2, linewidth=0.8)
            axis.plot(xs, mean, marker="o", markersize=3, color=color,
                      label=f"{name} (mean of {len(rs)} seeds)" if axis is ax else None)
            axis.fill_between(xs, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
        ends.append(xs[-1])
        tails.append(mean[xs >= 2 / 3 * xs[-1]])
    if ends:
        tail = np.concatenate(tails)
        zoom.set_xlim(2 / 3 * min(ends), max(ends) * 1.02)
        # the top 12 points: where the leaders differ (a selector far below leaves the panel)
        zoom.set_ylim(max(tail.min(), tail.max() - 12) - 1, tail.max() + 1.5)
    ax.set_xlabel("cumulative training time (s), evaluation excluded" if x == "train_time_s"
                  else "cumulative training FLOPs (forward + backward)")
    zoom.set_xlabel("the last third of training, zoomed")
    ax.set_ylabel(f"{split} accuracy % (all patches; {split} split)")
    note = "" if split == "test" else "; the table's test accuracy is measured once, at the end"
    fig.suptitle(f"{title}\nthin: each seed; bold: mean; band: ± 1 std over seeds; t=0: untrained (chance); "
                 f"curves on the {split} split{note}", fontsize=9)
    for axis in (ax, zoom):
        axis.grid(alpha=0.3)
    ax.legend(fontsize=8)
    try:
        save_figure(fig, path)
    finally:  # a figure that could not be written is not kept open either
        plt.close(fig)


def plot_keep_frequency(runs: list[dict], selectors: list[str], path: Path, title: str) -> None:
    """Where each selector keeps patches: per patch position, the share of training images
    that kept it (mean over seeds), as a heat map on the patch grid."""
    order = [n for n in series_order(runs, selectors)
             if any(series_name(r) == n and r.get("patch_keep_frequency") for r in runs)]
    if not order:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, len(order), figsize=(2.4 * len(order) + 0.8, 2.8), squeeze=False)
    for ax, name in zip(axes[0], order):
        freq = np.mean([r["patch_keep_frequency"] for r in runs
                        if series_name(r) == name and r.get("patch_keep_frequency")], axis=0)
        side = int(round(len(freq) ** 0.5))
        image = ax.imshow(freq.reshape(side, side), vmin=0, vmax=1, cmap="viridis")
        ax.set_title(name if len(name) <= 22 else name[:20] + "...", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="share of images keeping the patch")
    fig.suptitle(title, fontsize=9)
    try:
        save_figure(fig, path)
    finally:  # a figure that could not be written is not kept open either
        plt.close(fig)
