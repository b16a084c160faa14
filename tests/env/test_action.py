"""An action is parsed once into a `Keep`: the ViT's index, the host mask and the counts,
checked against masks and counts written out by hand."""
import numpy as np
import pytest
import torch

from patchenv.env.action import parse_action

CPU = torch.device("cpu")
N, B = 6, 3


def parse(action, selection, seed=0):
    return parse_action(action, selection, N, B, CPU, np.random.default_rng(seed))


def test_a_batch_mask_becomes_shared_indices():
    keep = parse([0, 1, 1, 0, 0, 1], "batch")
    assert keep.index.tolist() == [1, 2, 5]
    assert keep.mask.tolist() == [[False, True, True, False, False, True]] * B
    assert keep.per_image.tolist() == [3, 3, 3]
    assert (keep.tokens, keep.longest, keep.padding, keep.kept) == (9, 3, 0, 3.0)
    assert keep.position_counts().tolist() == [0, 3, 3, 0, 0, 3]


def test_every_patch_needs_no_index():
    for action, selection in ((np.ones(N), "batch"), (np.ones((B, N)), "image"), (N - 1, "count")):
        keep = parse(action, selection)
        assert keep.index is None and keep.mask.all() and keep.per_image.tolist() == [N] * B


def test_equal_per_image_counts_become_index_rows_without_padding():
    rows = [[1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 1], [1, 0, 0, 0, 0, 1]]
    keep = parse(torch.tensor(rows, dtype=torch.float32), "image")
    assert keep.index.tolist() == [[0, 1], [3, 5], [0, 5]]
    assert (keep.tokens, keep.longest, keep.padding) == (6, 2, 0)
    assert keep.position_counts().tolist() == [2, 1, 0, 1, 0, 2]


def test_uneven_per_image_counts_are_padded_on_the_host_and_count_the_padding():
    rows = np.array([[1, 1, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0]])
    keep = parse(rows, "image")
    assert keep.mask.tolist() == rows.astype(bool).tolist()
    # each row's kept patches first, in patch order, then dropped ones as filler (hidden)
    assert keep.index.index.tolist() == [[0, 1, 2, 3], [1, 0, 2, 3], [0, 2, 1, 3]]
    assert keep.index.key_mask.tolist() == [[True] * 4, [True, False, False, False], [True, True, False, False]]
    # 7 real tokens in rows padded to 4: 3 * 4 - 7 = 5 filler slots
    assert (keep.per_image.tolist(), keep.tokens, keep.longest, keep.padding) == ([4, 1, 2], 7, 4, 5)
    assert keep.kept == pytest.approx(7 / 3)


def test_a_count_draws_distinct_sorted_patches_per_image_from_the_generator():
    keep = parse(np.int64(1), "count", seed=3)  # action 1 keeps 2 patches of every image
    order = np.argsort(np.random.default_rng(3).random((B, N)), axis=1)[:, :2]  # the same draw, by hand
    assert keep.index.tolist() == np.sort(order, axis=1).tolist()
    assert keep.mask.sum(axis=1).tolist() == [2, 2, 2] and keep.per_image.tolist() == [2, 2, 2]
    assert all(keep.mask[i, j] for i, row in enumerate(keep.index.tolist()) for j in row)


@pytest.mark.parametrize("action, selection, error, words", [
    ([0] * N, "batch", ValueError, "at least one patch"),
    ([1, 2, 0, 0, 0, 0], "batch", ValueError, "other values: \\[2\\]"),
    (np.ones(N + 1), "batch", ValueError, "shape"),
    ("all", "batch", TypeError, "got str"),
    (N, "count", ValueError, "got 6"),
    (1.0, "count", TypeError, "dtype float64"),
])
def test_bad_actions_are_refused_in_one_line(action, selection, error, words):
    with pytest.raises(error, match=words) as e:
        parse(action, selection)
    assert "\n" not in str(e.value)
