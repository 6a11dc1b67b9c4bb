"""The numpy sum tree: sums, updates, prefix search and sampling frequencies."""

from __future__ import annotations

import numpy as np
import pytest

from rlbench.buffers.prioritized import SumTree


def tree_with(values: list[float]) -> SumTree:
    tree = SumTree(len(values))
    tree.update(np.arange(len(values)), np.array(values, dtype=np.float64))
    return tree


def test_sizes_round_up_to_a_power_of_two() -> None:
    for size, capacity in ((1, 1), (2, 2), (3, 4), (5, 8), (1024, 1024), (1025, 2048)):
        tree = SumTree(size)
        assert tree.capacity == capacity and tree.leaves.shape == (size,)
    with pytest.raises(ValueError, match="size 0"):
        SumTree(0)


def test_total_and_internal_sums() -> None:
    tree = tree_with([1.0, 0.0, 3.0, 2.0, 4.0])
    assert tree.total == 10.0
    # capacity 8: nodes 4..7 sum leaf pairs, 2..3 sum quadruples
    np.testing.assert_array_equal(tree.nodes[4:8], [1.0, 5.0, 4.0, 0.0])
    np.testing.assert_array_equal(tree.nodes[2:4], [6.0, 4.0])
    np.testing.assert_array_equal(tree.get(np.array([4, 0, 1])), [4.0, 1.0, 0.0])


def test_update_changes_only_its_path_and_last_duplicate_wins() -> None:
    tree = tree_with([1.0, 1.0, 1.0, 1.0])
    tree.update(np.array([2, 2]), np.array([5.0, 7.0]))
    np.testing.assert_array_equal(tree.leaves, [1.0, 1.0, 7.0, 1.0])
    assert tree.total == 10.0
    tree.update(np.array([], dtype=np.int64), np.array([]))
    assert tree.total == 10.0


def test_find_hand_case() -> None:
    tree = tree_with([1.0, 0.0, 3.0, 2.0])  # prefix intervals [0,1) [1,1) [1,4) [4,6)
    targets = np.array([0.0, 0.999, 1.0, 3.999, 4.0, 5.999])
    np.testing.assert_array_equal(tree.find(targets), [0, 0, 2, 2, 3, 3])


def test_find_never_returns_a_zero_leaf() -> None:
    tree = tree_with([0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    # at and beyond the total (float rounding can push a target there) and inside
    # intervals bordered by zero leaves
    found = tree.find(np.array([0.0, 1.9, 2.0, 2.9999, 3.0, 3.5, 1e9]))
    np.testing.assert_array_equal(found, [1, 1, 4, 4, 4, 4, 4])
    assert (tree.get(found) > 0).all()


def test_find_matches_searchsorted_on_random_trees() -> None:
    rng = np.random.default_rng(0)
    values = rng.random(1000) * (rng.random(1000) < 0.7)  # 30% zero leaves
    tree = tree_with(list(values))
    targets = rng.random(500) * tree.total
    expected = np.searchsorted(np.cumsum(values), targets, side="right")
    np.testing.assert_array_equal(tree.find(targets), expected)


def test_rebuild_reproduces_incremental_updates_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    tree = SumTree(37)
    for _ in range(200):  # small updates walk the tree in Python, larger ones vectorized
        size = int(rng.integers(1, 2 * SumTree.SCALAR_UPDATES))
        idx = rng.integers(0, 37, size=size)
        tree.update(idx, rng.random(size) * 10.0 ** rng.integers(-6, 6))
    copy = SumTree(37)
    copy.leaves[:] = tree.leaves
    copy.rebuild()
    assert np.array_equal(copy.nodes, tree.nodes)


def test_sampling_frequencies_follow_the_priorities() -> None:
    """Chi-square goodness of fit at a fixed seed (critical value for 7 dof, p = 0.001)."""
    priorities = np.array([1.0, 2.0, 0.0, 4.0, 8.0, 0.5, 0.0, 3.0, 1.5, 5.0])
    tree = tree_with(list(priorities))
    rng = np.random.default_rng(2)
    draws = 200_000
    counts = np.bincount(tree.find(rng.random(draws) * tree.total), minlength=priorities.size)
    expected = draws * priorities / priorities.sum()
    assert counts[priorities == 0].sum() == 0
    live = priorities > 0
    chi2 = (((counts[live] - expected[live]) ** 2) / expected[live]).sum()
    assert chi2 < 24.32, (counts, expected)


def test_single_leaf_tree() -> None:
    tree = tree_with([2.5])
    assert tree.depth == 0 and tree.total == 2.5
    np.testing.assert_array_equal(tree.find(np.array([0.0, 2.4])), [0, 0])
