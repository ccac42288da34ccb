"""NetAdapt's pruning grid: the specs whose pieces a look-up table needs to price every proposal.

One change at a time around a seed: every target (:func:`netadapt.proposals.targets`) at every
``grid_step``-th valid smaller width (always the smallest). Widths in between are interpolated
by the table. ``nas netadapt`` builds its table from this grid, and so does
``nas latency build-lut --netadapt-grid``. :func:`combined_specs` gives calibration networks
with several targets shrunk at once, like the networks NetAdapt walks through. Pure Python.
"""
from __future__ import annotations

import dataclasses
import random

from nas.spec.arch import ArchSpec
from nas.spec.checks import check_int
from netadapt.proposals import TargetOptions, targets, valid_widths, width_of
from search_spaces import references

# One default for every table of the pruning grid (`nas netadapt --lut-grid-step`, `nas latency
# build-lut --grid-step`): every 4th width, the rest interpolated. `python -m bench.latency
# --interpolation` checks interpolated widths of this grid against measured ones.
DEFAULT_GRID_STEP = 4


def grid_specs(spec: ArchSpec, step: int = 8, options: TargetOptions = TargetOptions(),
               grid_step: int = 1) -> list[ArchSpec]:  # 1 here: the whole grid (the fine grid bench.latency checks)
    """``spec`` and, for every target, every ``grid_step``-th valid smaller width (multiples of
    ``step``, always including the smallest)."""
    check_int("step_multiple", step, 1)
    check_int("grid_step", grid_step, 1)
    found: dict[str, ArchSpec] = {spec.arch_id: spec}
    for target in targets(spec, options):
        widths = list(valid_widths(spec, target, step))
        chosen = widths[grid_step - 1::grid_step]
        if widths and widths[-1] not in chosen:
            chosen.append(widths[-1])
        for _, variant in chosen:
            found.setdefault(variant.arch_id, variant)
    return list(found.values())


def combined_specs(spec: ArchSpec, step: int, options: TargetOptions, count: int, seed: int = 0) -> list[ArchSpec]:
    """``count`` specs with many targets shrunk at once (random fractions): end-to-end
    calibration points that look like the networks NetAdapt walks through."""
    rng = random.Random(seed)
    found: dict[str, ArchSpec] = {}
    for _ in range(20 * count + 20):  # bounded: duplicates are skipped
        if len(found) >= count:
            break
        fraction = 0.35 + 0.6 * rng.random()
        variant = spec
        for target in targets(spec, options):
            if rng.random() < 0.5:
                continue
            limit = width_of(variant, target) * fraction
            for width, candidate in valid_widths(variant, target, step):
                if width <= limit:
                    variant = candidate
                    break
        if variant.arch_id != spec.arch_id:
            found.setdefault(variant.arch_id, dataclasses.replace(variant, name=f"{spec.name}_cal{len(found)}"))
    return list(found.values())


NETADAPT_BASES = ("mobilenet_v3_small", "mobilenet_v3_large", "mnasnet_a1")


def netadapt_variants(count: int, seed: int = 0, step: int = 8) -> list[ArchSpec]:
    """``count`` NetAdapt-pruned networks (several targets shrunk at once, widths on NetAdapt's
    grid of multiples of ``step``), spread over MobileNetV3-Small, -Large and MnasNet-A1."""
    found: list[ArchSpec] = []
    for index, name in enumerate(NETADAPT_BASES):
        share = count // len(NETADAPT_BASES) + (index < count % len(NETADAPT_BASES))
        if share:
            found.extend(combined_specs(references.get(name), step, TargetOptions(), share, seed + index))
    return found
