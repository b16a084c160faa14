"""`compare`: ``python -m benchmarks.compare_selectors`` run in-process at the tests' small
size: synthetic data, the tiny preset, seed 0 on the CPU, no progress bar. The paper's
protocol (no validation split) and one run after another unless `extra` says otherwise:
the tests' bookkeeping counts on 2048 training images."""
from benchmarks import compare_selectors


def compare(out, *extra, selectors="all,random", epochs=1) -> int:
    """The command's exit status for these selectors and epochs, writing into `out`;
    `extra`: more flags, which win over the defaults above."""
    return compare_selectors.main(["--dataset", "synthetic", "--epochs", str(epochs), "--preset", "tiny",
                                   "--selectors", selectors, "--seeds", "0", "--device", "cpu", "--out", str(out),
                                   "--no-progress", "--protocol", "paper", "--schedule", "sequential", *extra])
