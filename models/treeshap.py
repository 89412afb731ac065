"""Exact path-dependent TreeSHAP for scikit-learn's HistGradientBoostingClassifier, vectorised over people.

Why not ``shap.TreeExplainer`` itself: it gives exactly these values (the tests compare the two on a real
model, and both against Shapley values computed from the definition), but it walks every tree for one
person at a time: 480-780 us CPU per person for a 109-tree, 31-leaf champion (this module: 32-42 us),
i.e. 2-3.5 CPU-minutes per 280k residents and 15-25 at 1.9M, which alone breaks the weekly time budget. Here the work runs the other
way round: one leaf at a time for all people at once, with numpy.

The maths (Lundberg et al. 2020, path-dependent value function): a leaf ``l`` with value ``v`` and the
set ``P`` of distinct features split on along its path contributes, for a coalition ``S`` of known
features, ``v * prod_{k in S} a_k * prod_{k in P \\ S} r_k``, where ``a_k`` says whether the person
satisfies every split on ``k`` along the path and ``r_k`` is the product of the training-count fractions
of those splits. The Shapley value of ``k`` in that product game depends on the person only through
the set ``A = {k : a_k}``:

    phi_k = v * (a_k - r_k) * prod_{j not in A, j != k} r_j * sum_s w(s, d) * e_{m - s}(r over A \\ {k})

with ``d = |P|``, ``m = |A \\ {k}|``, ``w(s, d) = s! (d - s - 1)! / d!`` and ``e_t`` the elementary
symmetric polynomials. So each leaf gets a small table (one row per pattern of ``A``) computed once per
model, and explaining people is a bitmask per leaf and a table lookup. A tree's value is the sum over
its leaves, and Shapley values are additive over leaves and trees.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
import weakref
from dataclasses import dataclass, replace
from math import factorial
from pathlib import Path
from typing import Any

import numpy as np

#: Leaves with at most this many distinct path features get a full table of every pattern (2^d rows);
#: deeper ones compute rows only for the patterns the people being explained actually have (a block's
#: distinct patterns; one person's own pattern in ``_person_values``), so any depth is exact.
FULL_TABLE_MAX_FEATURES = 12


@dataclass(frozen=True)
class _Leaf:
    features: np.ndarray  # distinct encoded columns split on along the path (d,)
    conditions: tuple[tuple[tuple[int, bool], ...], ...]  # per feature: (node, went left) along the path
    fractions: np.ndarray  # r_k per feature (d,)
    value: float
    # (d, 2^d) contributions per feature and pattern of satisfied features, or None if deep. Feature-major and
    # contiguous per feature for fast 1-D gathers, and kept only this way: a 400-tree champion's tables are
    # ~290 MB, which the API holds per model it explains with (pipelines.explain), so no second, row-major copy.
    table: np.ndarray | None


@dataclass(frozen=True)
class _Tree:
    split_nodes: np.ndarray  # internal node ids
    split_feature: np.ndarray
    split_threshold: np.ndarray
    missing_left: np.ndarray
    leaves: tuple[_Leaf, ...]


def _shapley_weights(d: int) -> np.ndarray:
    return np.array([factorial(s) * factorial(d - s - 1) / factorial(d) for s in range(d)])


def leaf_table(patterns: np.ndarray, fractions: np.ndarray, value: float) -> np.ndarray:
    """Shapley contributions (patterns x d) of one leaf's product game for boolean patterns of A."""
    return leaf_tables(patterns, fractions[None, :], np.array([value]))[0]


def leaf_tables(patterns: np.ndarray, fractions: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``leaf_table`` for many leaves with the same number of path features at once: (leaves x patterns x d).

    ``fractions`` is (leaves x d) and ``values`` (leaves,). ``patterns`` is (patterns x d), the same for every
    leaf (a full table, or a block's patterns), or (leaves x patterns x d), each leaf its own (one person's
    pattern per deep leaf: ``_person_values``). WHY batched, and over all ``k`` at once: a 400-tree champion has
    ~12,000 leaves, and one leaf (or one ``k``) at a time spent the time in numpy call overhead. Every element
    goes through the same operations in the same order whatever the batch, so the values are bit-for-bit those
    of one leaf and one pattern alone (tests/models/test_reasons.py).
    """
    shared = patterns.ndim == 2
    p = patterns[None] if shared else patterns  # (1 or leaves, n, d)
    d = p.shape[-1]
    a = p.astype(np.float64)
    r = fractions[:, None, :]  # (leaves, 1, d)
    # e[..., t] = e_t(r over A): elementary symmetric polynomials, built one factor (1 + r_j z) at a time.
    e = np.zeros((fractions.shape[0], p.shape[1], d + 1))
    e[..., 0] = 1.0
    for j in range(d):
        shifted = np.zeros_like(e)
        shifted[..., 1:] = e[..., :-1] * r[..., j : j + 1]
        e = e + a[..., j : j + 1] * shifted
    off = np.prod(np.where(p, 1.0, r), axis=-1)  # prod over j not in A of r_j: (leaves, n)
    w = _shapley_weights(d)
    # For every k at once (axis -2): remove factor k from e when k is in A: e'_t = e_t - r_k e'_{t-1} (stable:
    # r_k <= 1).
    reduced = np.repeat(e[..., None, :], d, axis=-2)  # (leaves, n, k, t)
    for t in range(1, d + 1):
        reduced[..., t] = e[..., t : t + 1] - r * reduced[..., t - 1]
    e_k = np.where(p[..., None], reduced, e[..., None, :])
    m = p.sum(axis=-1, keepdims=True) - p  # |A \ {k}|: (1 or leaves, n, k)
    total = np.zeros(e_k.shape[:-1])
    for t in range(d):
        s = m - t  # coalition size for the term e_t
        total += np.where(s >= 0, w[np.clip(s, 0, d - 1)] * e_k[..., t], 0.0)
    rest = np.where(p, off[..., None], off[..., None] / r)
    return values[:, None, None] * (a - r) * rest * total


#: Elements per batch of ``leaf_tables`` (leaves x patterns x d x (d + 1)): bounds its working memory to ~100 MB.
_TABLE_BATCH_ELEMENTS = 1 << 21


def _full_tables(leaves: list[tuple[np.ndarray, np.ndarray, float]]) -> list[np.ndarray | None]:
    """Every pattern's contributions for each (features, fractions, value) leaf of at most
    ``FULL_TABLE_MAX_FEATURES`` path features (None for deeper ones), built in batches of equal depth."""
    tables: list[np.ndarray | None] = [None] * len(leaves)
    by_depth: dict[int, list[int]] = {}
    for i, (features, _, _) in enumerate(leaves):
        if len(features) <= FULL_TABLE_MAX_FEATURES:
            by_depth.setdefault(len(features), []).append(i)
    for d, members in by_depth.items():
        patterns = ((np.arange(2**d)[:, None] >> np.arange(d)) & 1).astype(bool)
        step = max(1, _TABLE_BATCH_ELEMENTS // (2**d * (d + 1) * max(d, 1)))
        for start in range(0, len(members), step):
            batch = members[start : start + step]
            fractions = np.array([leaves[i][1] for i in batch]).reshape(len(batch), d)
            values = np.array([leaves[i][2] for i in batch])
            for i, table in zip(batch, leaf_tables(patterns, fractions, values), strict=True):
                tables[i] = table
    return tables


def _compile(model: Any) -> list[_Tree]:
    """Per tree: its splits, and per leaf its path features, fractions and (small) table."""
    trees: list[_Tree] = []
    pending: list[tuple[np.ndarray, Any, list[tuple[np.ndarray, tuple, np.ndarray, float]]]] = []
    for iteration in model._predictors:
        if len(iteration) != 1:
            raise ValueError("only binary classifiers are supported")
        nodes = iteration[0].nodes
        if "is_categorical" in nodes.dtype.names and nodes["is_categorical"].any():
            raise ValueError("native categorical splits are not supported (features are one-hot encoded)")
        leaves: list[tuple[np.ndarray, tuple, np.ndarray, float]] = []
        stack: list[tuple[int, tuple[tuple[int, int, bool, float], ...]]] = [(0, ())]
        while stack:
            node, path = stack.pop()
            if nodes["is_leaf"][node]:
                by_feature: dict[int, list[tuple[int, bool]]] = {}
                fraction: dict[int, float] = {}
                for parent, feature, left, frac in path:
                    by_feature.setdefault(feature, []).append((parent, left))
                    fraction[feature] = fraction.get(feature, 1.0) * frac
                features = np.array(list(by_feature), dtype=np.intp)
                fractions = np.array([fraction[f] for f in by_feature])
                value = float(nodes["value"][node])
                leaves.append((features, tuple(tuple(c) for c in by_feature.values()), fractions, value))
                continue
            left, right = int(nodes["left"][node]), int(nodes["right"][node])
            count = float(nodes["count"][node])
            feature = int(nodes["feature_idx"][node])
            stack.append((left, (*path, (node, feature, True, float(nodes["count"][left]) / count))))
            stack.append((right, (*path, (node, feature, False, float(nodes["count"][right]) / count))))
        internal = np.flatnonzero(~nodes["is_leaf"].astype(bool))
        pending.append((internal, nodes, leaves))
    tables = _full_tables([(f, r, v) for _, _, leaves in pending for f, _, r, v in leaves])
    position = 0
    for internal, nodes, leaves in pending:
        compiled = []
        for features, conditions, fractions, value in leaves:
            table = tables[position]
            compiled.append(_Leaf(features, conditions, fractions, value,
                                  None if table is None else np.ascontiguousarray(table.T)))
            position += 1
        trees.append(_Tree(
            split_nodes=internal,
            split_feature=nodes["feature_idx"][internal].astype(np.intp),
            split_threshold=nodes["num_threshold"][internal].astype(np.float64),
            missing_left=nodes["missing_go_to_left"][internal].astype(bool),
            leaves=tuple(compiled),
        ))
    return trees


_COMPILED: weakref.WeakKeyDictionary[Any, list[_Tree]] = weakref.WeakKeyDictionary()

#: The layout of a tables file (``tables_from_file``): bump it whenever ``_Tree``, ``_Leaf`` or ``_Flat`` change, so
#: a file written by other code is rebuilt rather than read.
TABLES_FORMAT = 3
#: Table files kept in a cache directory (the newest): about 0.3 GB each for a 400-tree champion.
TABLE_FILES_KEPT = 3


def _fingerprint(model: Any) -> str:
    """SHA-256 of every tree's nodes: the tables of exactly this fitted model, whatever the file is called."""
    digest = hashlib.sha256()
    for iteration in model._predictors:
        for predictor in iteration:
            digest.update(np.ascontiguousarray(predictor.nodes).tobytes())
    return digest.hexdigest()


def tables_from_file(model: Any, path: Path) -> None:
    """Build ``model``'s tables once per model rather than once per process: read them from ``path`` when an
    earlier process wrote them for this very model (same format, same trees), else build them and write ``path``
    for the next (atomically; only the ``TABLE_FILES_KEPT`` newest files of the directory stay).

    WHY: building a 400-tree champion's tables costs ~5-7 CPU s, paid by every weekly run (it explains its listed
    people) and by the API's first on-demand lookup after a restart; reading them back costs ~0.5-0.8 s. The file
    holds the flattened model too (``_Flat``: 1-2 s of Python loops to build), with every table once, in the
    flat's one array (the trees' leaves point into it when read back). The file is a pickle, read only from the
    deployment's own home, as the registry's model files are.
    """
    if model in _COMPILED:
        return
    fingerprint = _fingerprint(model)
    stored = None
    try:
        with open(path, "rb") as handle:
            layout, found, trees, flat = pickle.load(handle)
        if layout == TABLES_FORMAT and found == fingerprint:
            stored = trees, flat
    except FileNotFoundError:
        pass
    except Exception:  # unreadable or from other code: rebuilt below, and the file replaced
        stored = None
    if stored is not None:
        _remember(model, *stored)
        return
    trees, flat = _remember(model, _compile(model))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    with open(partial, "wb") as handle:
        pickle.dump((TABLES_FORMAT, fingerprint, _without_tables(trees), flat), handle,
                    protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, path)
    stale = sorted(path.parent.glob("*.pkl"), key=lambda p: p.stat().st_mtime, reverse=True)[TABLE_FILES_KEPT:]
    for old in stale:
        old.unlink(missing_ok=True)


def _compiled(model: Any) -> list[_Tree]:
    """Tables are built once per fitted model object (not pickled with it) and reused for every chunk."""
    trees = _COMPILED.get(model)
    if trees is None:
        trees, _ = _remember(model, _compile(model))
    return trees


def _remember(model: Any, trees: list[_Tree], flat: _Flat | None = None) -> tuple[list[_Tree], _Flat]:
    """Keep ``model``'s trees and its flattened form (built here unless given), with each table held once: the
    tabled leaves' tables become views into the flat's one array (a 400-tree champion's tables are ~280 MB;
    the API holds them per model it explains with)."""
    if flat is None:
        flat = _flatten(trees)
    first_rows = flat.tabled_offset[flat.tabled_leaf_starts].tolist()  # where each tabled leaf's table starts
    tabled = 0
    shared = []
    for tree in trees:
        leaves = []
        for leaf in tree.leaves:
            d = len(leaf.features)
            if leaf.table is not None and d:
                start = first_rows[tabled]
                leaf = replace(leaf, table=flat.tables[start : start + d * (1 << d)].reshape(d, 1 << d))
                tabled += 1
            leaves.append(leaf)
        shared.append(replace(tree, leaves=tuple(leaves)))
    _COMPILED[model], _FLAT[model] = shared, flat
    return shared, flat


def _without_tables(trees: list[_Tree]) -> list[_Tree]:
    """The trees as a tables file stores them: each tabled leaf's table is in the flat, so it keeps only an empty
    (d x 0) placeholder that says "tabled" (None still says "deep"); ``_remember`` points it back."""
    return [replace(tree, leaves=tuple(
        replace(leaf, table=np.empty((len(leaf.features), 0))) if leaf.table is not None and len(leaf.features)
        else leaf for leaf in tree.leaves)) for tree in trees]


def expected_value(model: Any) -> float:
    """The raw margin with no feature known: baseline plus each tree's count-weighted mean leaf value."""
    total = float(np.ravel(model._baseline_prediction)[0])
    for tree in _compiled(model):
        total += sum(leaf.value * float(np.prod(leaf.fractions)) for leaf in tree.leaves)
    return total


#: People per block: bounds working memory (a few hundred MB per block whatever the population).
CHUNK_ROWS = 100_000


def tree_shap_values(model: Any, x: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Exact path-dependent TreeSHAP values (rows x encoded columns) of the model's raw margin.

    Blocks of ``CHUNK_ROWS`` people run on ``threads`` threads (default: one per CPU, at most 4): the
    work is large numpy operations, which release the GIL.
    """
    from concurrent.futures import ThreadPoolExecutor

    x = np.asarray(x, dtype=np.float64)
    trees = _compiled(model)
    if x.shape[0] <= FEW_ROWS:  # a list's stragglers or one resident in the API: per person, over leaves at once
        flat = _flat(model, trees)
        return np.array([_person_values(flat, row, x.shape[1]) for row in x]).reshape(x.shape)
    out = np.empty(x.shape, dtype=np.float64)
    blocks = [(start, min(start + CHUNK_ROWS, x.shape[0])) for start in range(0, x.shape[0], CHUNK_ROWS)]

    def run(block: tuple[int, int]) -> None:
        start, stop = block
        out[start:stop] = _block_values(trees, x[start:stop])

    workers = max(1, min(threads or min(os.cpu_count() or 1, 4), len(blocks)))
    if workers == 1:
        for block in blocks:
            run(block)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, blocks))
    return out


def _block_values(trees: list[_Tree], x: np.ndarray) -> np.ndarray:
    """TreeSHAP values of a block of people (rows x encoded columns), leaf by leaf in model order.

    Patterns are built in the narrowest unsigned type that holds them (one byte per person for up to 8
    path features, against eight for ``intp``) from split sides computed once per node in both directions;
    each leaf's values are then added in the same order as before, so results are bit-for-bit unchanged.
    """
    phi = np.zeros((x.shape[1], x.shape[0]))  # feature-major: each leaf adds to a few contiguous rows
    for tree in trees:
        sides: dict[tuple[int, bool], np.ndarray] = {}  # (node, went left) -> 0/1 per person, as uint8
        for node, feature, threshold, missing_left in zip(
            tree.split_nodes.tolist(), tree.split_feature.tolist(), tree.split_threshold.tolist(),
            tree.missing_left.tolist(), strict=True,
        ):
            column = x[:, feature]
            left = column <= threshold
            if missing_left:
                left |= np.isnan(column)
            sides[node, True] = left.view(np.uint8)
            sides[node, False] = (~left).view(np.uint8)
        for leaf in tree.leaves:
            width = np.uint8 if len(leaf.conditions) <= 8 else np.uint16
            pattern = np.zeros(x.shape[0], dtype=width)
            for k, conditions in enumerate(leaf.conditions):
                satisfied = sides[conditions[0]]
                for condition in conditions[1:]:
                    satisfied = satisfied & sides[condition]
                pattern |= satisfied.astype(width) << width(k) if k else satisfied
            if leaf.table is not None:
                table, rows = leaf.table, pattern.astype(np.intp)
            else:
                seen, rows = np.unique(pattern, return_inverse=True)
                patterns = ((seen[:, None].astype(np.intp) >> np.arange(len(leaf.features))) & 1).astype(bool)
                table = np.ascontiguousarray(leaf_table(patterns, leaf.fractions, leaf.value).T)
            for feature, column in zip(leaf.features.tolist(), table, strict=True):
                phi[feature] += column.take(rows)
    return phi.T


#: Blocks of at most this many people are explained one person at a time, vectorised over the model's leaves:
#: the block path's per-leaf numpy calls (~12,400 leaves for a 400-tree champion) cost ~0.5-0.7 s whatever the
#: block size, which made an on-demand lookup in the API slow.
FEW_ROWS = 8


@dataclass(frozen=True)
class _DeepLeaves:
    """The leaves with the same number ``d`` of path features that have no table (more than
    ``FULL_TABLE_MAX_FEATURES``): one person's row of each is worked out when asked (``leaf_tables`` on the
    person's own pattern per leaf), the very arithmetic the block path does for the patterns it meets."""

    slots: np.ndarray  # (leaves, d): each leaf's slots, k by k
    fractions: np.ndarray  # (leaves, d)
    values: np.ndarray  # (leaves,)


@dataclass(frozen=True)
class _Flat:
    """Every tree's splits and every leaf's conditions, flattened in model order: one slot per (leaf, k). Tabled
    leaves' slots read their table; deep leaves' slots are computed per person (``deep``)."""

    split_feature: np.ndarray  # (all split nodes,)
    split_threshold: np.ndarray
    missing_left: np.ndarray
    slot_conditions: np.ndarray  # per slot, its conditions as side indices (2 * node + went right)
    slot_starts: np.ndarray  # where each slot's conditions start
    slot_feature: np.ndarray  # the encoded column each slot adds to
    tabled_slots: np.ndarray  # the slots of tabled leaves, in model order
    tabled_shift: np.ndarray  # per tabled slot, k: its bit in its leaf's pattern
    tabled_leaf_starts: np.ndarray  # where each tabled leaf's slots start in ``tabled_slots``
    tabled_leaf_of_slot: np.ndarray  # per tabled slot, its tabled leaf
    tabled_offset: np.ndarray  # per tabled slot, the offset of its table row (k) in ``tables``
    tables: np.ndarray  # every table, feature-major, concatenated
    deep: tuple[_DeepLeaves, ...]


_FLAT: weakref.WeakKeyDictionary[Any, _Flat] = weakref.WeakKeyDictionary()


def _flat(model: Any, trees: list[_Tree]) -> _Flat:
    """The flattened model: kept with its trees (``_remember``), else built from ``trees`` once per model."""
    flat = _FLAT.get(model)
    if flat is None:
        flat = _FLAT[model] = _flatten(trees)
    return flat


def _flatten(trees: list[_Tree]) -> _Flat:
    """Every tree's splits and leaves in one set of arrays, in model order. Leaves without path features (a
    stump) add nothing and get no slot, as in the block path."""
    features, thresholds, missing, conditions, starts, slot_feature = [], [], [], [], [], []
    tabled, shifts, leaf_starts, owners, offsets, tables = [], [], [], [], [], []
    deep: dict[int, tuple[list[list[int]], list[np.ndarray], list[float]]] = {}
    nodes_before = table_size = 0
    for tree in trees:
        local = {int(node): nodes_before + i for i, node in enumerate(tree.split_nodes.tolist())}
        features.append(tree.split_feature)
        thresholds.append(tree.split_threshold)
        missing.append(tree.missing_left)
        for leaf in tree.leaves:
            if len(leaf.features) == 0:
                continue
            first = len(slot_feature)
            for feature, by_node in zip(leaf.features.tolist(), leaf.conditions, strict=True):
                starts.append(len(conditions))
                conditions.extend(2 * local[node] + (0 if left else 1) for node, left in by_node)
                slot_feature.append(feature)
            d = len(leaf.features)
            if leaf.table is None:
                slots, fractions, values = deep.setdefault(d, ([], [], []))
                slots.append(list(range(first, first + d)))
                fractions.append(leaf.fractions)
                values.append(leaf.value)
                continue
            leaf_starts.append(len(tabled))
            width = leaf.table.shape[1]
            for k in range(d):
                tabled.append(first + k)
                shifts.append(k)
                owners.append(len(leaf_starts) - 1)
                offsets.append(table_size + k * width)
            tables.append(leaf.table.reshape(-1))
            table_size += leaf.table.size
        nodes_before += len(tree.split_nodes)

    def ints(values: list[int]) -> np.ndarray:
        return np.array(values, dtype=np.intp)

    def joined(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    return _Flat(
        joined(features, np.intp), joined(thresholds, np.float64), joined(missing, bool),
        ints(conditions), ints(starts), ints(slot_feature),
        ints(tabled), ints(shifts), ints(leaf_starts), ints(owners), ints(offsets),
        joined(tables, np.float64),
        tuple(_DeepLeaves(np.array(slots, dtype=np.intp), np.array(fractions), np.array(values))
              for slots, fractions, values in deep.values()),
    )


def _person_values(flat: _Flat, row: np.ndarray, columns: int) -> np.ndarray:
    """One person's TreeSHAP values: the same per-leaf values ``_block_values`` gives (a tabled leaf's table
    entry; a deep leaf's row for the person's pattern, by the same arithmetic), added per column in the same
    order (model order, leaf by leaf, k by k; ``np.add.at`` adds in index order), so bit-for-bit equal."""
    phi = np.zeros(columns)
    if flat.slot_feature.size == 0:  # only stumps: nothing to attribute
        return phi
    value = row[flat.split_feature]
    left = value <= flat.split_threshold
    left |= np.isnan(value) & flat.missing_left
    sides = np.empty(2 * len(left), dtype=bool)
    sides[0::2], sides[1::2] = left, ~left
    satisfied = np.logical_and.reduceat(sides[flat.slot_conditions], flat.slot_starts)
    contributions = np.empty(len(satisfied))
    if flat.tabled_slots.size:
        bits = satisfied[flat.tabled_slots].astype(np.intp) << flat.tabled_shift
        pattern = np.add.reduceat(bits, flat.tabled_leaf_starts)[flat.tabled_leaf_of_slot]
        contributions[flat.tabled_slots] = flat.tables[flat.tabled_offset + pattern]
    for group in flat.deep:  # one pattern per leaf: (leaves, 1, d)
        rows = leaf_tables(satisfied[group.slots][:, None, :], group.fractions, group.values)
        contributions[group.slots] = rows[:, 0, :]
    np.add.at(phi, flat.slot_feature, contributions)
    return phi
