"""Weight surgery: turn a trained network into the network of a narrower spec.

For every channel set (see :mod:`netadapt.channels`) that shrinks, the filters with the largest
L2 norm are kept: the producing conv's output filters (summed over every producer of a residual
group), the expansion conv's filters, the SE reduce conv's filters, the head conv's filters and
the hidden layer's rows. Then every parameter that touches a set is sliced along it: the
producing conv's output filters and its BN (gamma, beta, moving mean and variance), the
depthwise conv and its BN, the SE reduce/expand convs, the next layers' input channels (the
following block's first conv, or the head conv), and the hidden layer and classifier.

**Split convs.** A conv split into ``g`` groups (MixConv's kernels, MixNet's grouped 1x1 convs)
owns the channels ``split_channels(width, g)`` assigns to each group, by position. When several
convs split one set differently (for example 4 kernel groups and 2 grouped 1x1 convs), their
boundaries cut the set into *cells*. Surgery keeps, from each old cell, the best filters that
the same cell of the new width can hold, in their original order; a width whose cells do not
line up with the old ones (a remainder that moves a boundary across another) cannot be reached
by pruning and raises :class:`SurgeryError`. The kept channels then fall in every new group
exactly where ``split_channels`` of the new width puts them.

A squeeze width that grows (an SE width derived from a width that shrank, rounded up) gets
new hidden units with zero weights and bias: their activation is 0 and they add nothing.

:func:`shrink_weights` works on numpy arrays and imports no MindSpore;
:func:`netadapt.worker.shrink_network` builds the new MindSpore network and loads the sliced
weights into it.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from nas.spec.arch import ArchSpec
from nas.spec.parts import split_channels
from netadapt.channels import HEAD, HIDDEN, ChannelLayout, Key, structure_difference
from netadapt.errors import SurgeryError

BN_FIELDS = ("gamma", "beta", "moving_mean", "moving_variance")


# ----- which channels to keep -------------------------------------------------------------------


def _boundaries(width: int, partitions: set[int]) -> list[int]:
    cuts = {0, width}
    for groups in partitions:
        position = 0
        for part in split_channels(width, groups):
            position += part
            cuts.add(position)
    return sorted(cuts)


def _labels(width: int, partitions: set[int], starts: list[int]) -> list[tuple[int, ...]]:
    """For each cell start, the group it falls in under every partition (in sorted order)."""
    labels = []
    for start in starts:
        label = []
        for groups in sorted(partitions):
            position, index = 0, 0
            for index, part in enumerate(split_channels(width, groups)):
                if start < position + part:
                    break
                position += part
            label.append(index)
        labels.append(tuple(label))
    return labels


def cell_sizes(old_width: int, new_width: int, partitions: set[int]) -> list[tuple[int, int, int]]:
    """``(old start, old size, new size)`` for every cell of a set that shrinks from ``old_width``
    to ``new_width`` under ``partitions`` (group counts of the convs that split it)."""
    if new_width > old_width:
        raise SurgeryError(f"width grows from {old_width} to {new_width}; surgery only removes channels")
    if new_width < 1:
        raise SurgeryError(f"width {new_width} leaves no channels")
    old_cuts, new_cuts = _boundaries(old_width, partitions), _boundaries(new_width, partitions)
    old_cells = [(a, b - a) for a, b in zip(old_cuts, old_cuts[1:])]
    new_cells = [(a, b - a) for a, b in zip(new_cuts, new_cuts[1:])]
    splits = sorted(partitions)
    if (len(old_cells) != len(new_cells)
            or _labels(old_width, partitions, [a for a, _ in old_cells])
            != _labels(new_width, partitions, [a for a, _ in new_cells])):
        raise SurgeryError(f"the group splits {splits} of {old_width} channels do not line up with those of "
                           f"{new_width} channels")
    cells = []
    for (start, size), (_, new_size) in zip(old_cells, new_cells):
        if new_size > size:
            raise SurgeryError(f"splitting {new_width} channels into groups {splits} needs {new_size} channels "
                               f"in a group that holds {size} of {old_width}")
        cells.append((start, size, new_size))
    return cells


def select_channels(scores: np.ndarray, new_width: int, partitions: set[int] = frozenset({1})) -> np.ndarray:
    """Indices of the ``new_width`` channels to keep: in every cell, those with the largest score
    (ties keep the earlier channel), returned in their original order."""
    scores = np.asarray(scores, dtype=np.float64)
    kept = []
    for start, size, new_size in cell_sizes(len(scores), new_width, set(partitions)):
        cell = scores[start:start + size]
        order = np.argsort(-cell, kind="stable")[:new_size]
        kept.extend(start + int(i) for i in sorted(order))
    return np.asarray(kept, dtype=np.int64)


def check_reachable(old: ArchSpec, new: ArchSpec) -> None:
    """Raise :class:`SurgeryError` unless surgery can turn ``old``'s network into ``new``'s."""
    difference = structure_difference(old, new)
    if difference is not None:
        raise SurgeryError(f"the specs differ in more than widths: {difference}")
    before, after = ChannelLayout(old), ChannelLayout(new)
    for key, width in before.widths.items():
        if key[0] == "se":
            continue  # a squeeze width may grow (new units start at zero)
        try:
            cell_sizes(width, after.widths[key], before.partitions[key])
        except SurgeryError as error:
            raise SurgeryError(f"{_describe(key, before)}: {error}") from None


def _describe(key: Key, layout: ChannelLayout) -> str:
    if key[0] == "group":
        return f"residual group {layout.group(key).name}"
    if key[0] in ("mid", "se"):
        return f"{'expansion' if key[0] == 'mid' else 'squeeze width'} of blocks.{key[1]}.{key[2]}"
    return "head conv" if key == HEAD else "hidden layer"


# ----- parameters ---------------------------------------------------------------------------------


def _conv_names(prefix: str, groups: int) -> list[str]:
    return [f"{prefix}.conv.weight"] if groups == 1 else [f"{prefix}.conv.{g}.weight" for g in range(groups)]


def _get(params: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in params:
        raise SurgeryError(f"the weights lack {name!r}; they do not belong to this spec")
    return np.asarray(params[name])


def _filter_norms(params: Mapping[str, np.ndarray], prefix: str, groups: int) -> np.ndarray:
    """Squared L2 norm of every output filter of a (possibly split) conv, in channel order."""
    rows = [np.square(_get(params, name).astype(np.float64)).reshape(_get(params, name).shape[0], -1).sum(axis=1)
            for name in _conv_names(prefix, groups)]
    return np.concatenate(rows)


def _dense_norms(params: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    return np.square(_get(params, name).astype(np.float64)).sum(axis=1)


def _take(array: np.ndarray, axis: int, keep: np.ndarray) -> np.ndarray:
    """``array`` indexed by ``keep`` along ``axis``; index -1 gives a new all-zero slice."""
    keep = np.asarray(keep)
    safe = np.where(keep < 0, 0, keep)
    taken = np.take(array, safe, axis=axis)
    if (keep < 0).any():
        shape = [1] * taken.ndim
        shape[axis] = len(keep)
        taken = taken * (keep >= 0).reshape(shape).astype(taken.dtype)
    return np.ascontiguousarray(taken)


class _Slicer:
    """Slices the old parameters into the new network's, one conv at a time."""

    def __init__(self, params: Mapping[str, np.ndarray]) -> None:
        self.params = params
        self.out: dict[str, np.ndarray] = {}

    def conv_bn(self, prefix: str, groups: int, in_width: int, out_width: int, in_keep: np.ndarray | None,
                out_keep: np.ndarray, *, depthwise: bool = False) -> None:
        in_splits, out_splits = split_channels(in_width, groups), split_channels(out_width, groups)
        in_start = out_start = 0
        for name, in_size, out_size in zip(_conv_names(prefix, groups), in_splits, out_splits):
            weight = _get(self.params, name)
            local_out = [k - out_start for k in out_keep if out_start <= k < out_start + out_size]
            weight = _take(weight, 0, np.asarray(local_out, dtype=np.int64))
            if not depthwise and in_keep is not None:
                local_in = [k - in_start for k in in_keep if in_start <= k < in_start + in_size]
                weight = _take(weight, 1, np.asarray(local_in, dtype=np.int64))
            self.out[name] = weight
            in_start += in_size
            out_start += out_size
        for field in BN_FIELDS:
            self.out[f"{prefix}.bn.{field}"] = _take(_get(self.params, f"{prefix}.bn.{field}"), 0, out_keep)

    def se(self, prefix: str, mid_keep: np.ndarray, se_keep: np.ndarray) -> None:
        self.out[f"{prefix}.se.reduce.weight"] = _take(_take(_get(self.params, f"{prefix}.se.reduce.weight"),
                                                             0, se_keep), 1, mid_keep)
        self.out[f"{prefix}.se.reduce.bias"] = _take(_get(self.params, f"{prefix}.se.reduce.bias"), 0, se_keep)
        self.out[f"{prefix}.se.expand.weight"] = _take(_take(_get(self.params, f"{prefix}.se.expand.weight"),
                                                             0, mid_keep), 1, se_keep)
        self.out[f"{prefix}.se.expand.bias"] = _take(_get(self.params, f"{prefix}.se.expand.bias"), 0, mid_keep)

    def dense(self, name: str, out_keep: np.ndarray | None, in_keep: np.ndarray | None) -> None:
        weight = _get(self.params, f"{name}.weight")
        if out_keep is not None:
            weight = _take(weight, 0, out_keep)
        if in_keep is not None:
            weight = _take(weight, 1, in_keep)
        self.out[f"{name}.weight"] = weight
        bias = _get(self.params, f"{name}.bias")
        self.out[f"{name}.bias"] = _take(bias, 0, out_keep) if out_keep is not None else np.array(bias)


def importance(layout: ChannelLayout, params: Mapping[str, np.ndarray], key: Key) -> np.ndarray:
    """The score of every channel of set ``key``: the squared L2 norm of its producing filters
    (summed over the producers of a residual group)."""
    if key[0] == "group":
        total = np.zeros(layout.widths[key])
        for producer in layout.group(key).producers:
            if producer == 0:
                total += _filter_norms(params, "stem", 1)
                continue
            for sets in layout.layers:
                if sets.plan.block == producer - 1:
                    plan = sets.plan
                    if plan.kind == "conv":
                        total += _filter_norms(params, f"{plan.name}.conv", 1)
                    else:
                        total += _filter_norms(params, f"{plan.name}.project", plan.project_groups)
        return total
    if key[0] == "mid":
        plan = next(s.plan for s in layout.layers if s.mid == key)
        return _filter_norms(params, f"{plan.name}.expand", plan.expand_groups)
    if key[0] == "se":
        plan = next(s.plan for s in layout.layers if s.se == key)
        return np.square(_get(params, f"{plan.name}.se.reduce.weight").astype(np.float64)).reshape(
            plan.se_channels, -1).sum(axis=1)
    if key == HEAD:
        return _filter_norms(params, "head", 1)
    if key == HIDDEN:
        return _dense_norms(params, "hidden.weight")
    raise KeyError(f"unknown channel set {key!r}")


def keep_indices(old: ArchSpec, params: Mapping[str, np.ndarray], new: ArchSpec) -> dict[Key, np.ndarray]:
    """For every channel set of ``old``, the indices of the channels ``new`` keeps (-1 marks a new,
    zero-initialised squeeze unit)."""
    check_reachable(old, new)
    before, after = ChannelLayout(old), ChannelLayout(new)
    keeps: dict[Key, np.ndarray] = {}
    for key, width in before.widths.items():
        target = after.widths[key]
        if target == width:
            keeps[key] = np.arange(width, dtype=np.int64)
        elif key[0] == "se" and target > width:
            keeps[key] = np.concatenate([np.arange(width), -np.ones(target - width)]).astype(np.int64)
        else:
            keeps[key] = select_channels(importance(before, params, key), target, before.partitions[key])
    return keeps


def shrink_weights(old: ArchSpec, params: Mapping[str, Any], new: ArchSpec,
                   keeps: Mapping[Key, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The parameters of ``new``'s network, sliced from ``old``'s ``params`` (name -> array).

    ``keeps`` overrides which channels survive (default: :func:`keep_indices`, largest L2 norm).
    """
    arrays = {name: np.asarray(value.asnumpy() if hasattr(value, "asnumpy") else value)
              for name, value in params.items()}
    if keeps is None:
        keeps = keep_indices(old, arrays, new)
    else:
        check_reachable(old, new)
    layout = ChannelLayout(old)
    slicer = _Slicer(arrays)
    first = layout.group_of[0]
    slicer.conv_bn("stem", 1, old.in_channels, old.stem.channels, None, keeps[first])
    for sets in layout.layers:
        plan, prefix = sets.plan, sets.plan.name
        in_keep, mid_keep, out_keep = keeps[sets.input], keeps[sets.mid], keeps[sets.output]
        if plan.kind == "conv":
            slicer.conv_bn(f"{prefix}.conv", 1, plan.in_channels, plan.out_channels, in_keep, out_keep)
        else:
            if plan.has_expand:
                slicer.conv_bn(f"{prefix}.expand", plan.expand_groups, plan.in_channels, plan.mid_channels,
                               in_keep, mid_keep)
            slicer.conv_bn(f"{prefix}.dw", len(plan.kernel), plan.mid_channels, plan.mid_channels, mid_keep,
                           mid_keep, depthwise=True)
        if sets.se is not None:
            slicer.se(prefix, mid_keep, keeps[sets.se])
        if plan.kind != "conv":
            slicer.conv_bn(f"{prefix}.project", plan.project_groups, plan.mid_channels, plan.out_channels,
                           mid_keep, out_keep)
    slicer.conv_bn("head", 1, old.blocks[-1].out, old.head.channels, keeps[layout.head_input], keeps[HEAD])
    features = keeps[HEAD]
    if old.head.hidden is not None:
        slicer.dense("hidden", keeps[HIDDEN], keeps[HEAD])
        features = keeps[HIDDEN]
    slicer.dense("classifier", None, features)
    return slicer.out
