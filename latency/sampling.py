"""Where look-up-table pieces and check samples come from: a search space, spec files, or the
references (and random variants of them). NetAdapt's channel grid is :mod:`netadapt.grid`'s.

Pure Python (no MindSpore).
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

from nas.spec.arch import ArchSpec
from nas.spec.errors import SpecError
from nas.spec.parts import BlockSpec, SESpec, make_divisible
from nas.spec.profile import profile
from search_spaces import get_space, references

VARIANT_BASES = ("mobilenet_v2", "mnasnet_a1", "mobilenet_v3_large")
REFERENCE_SPACE = "refs"
CALIBRATION_POOL = 8  # candidates drawn per calibration network, to spread them over cost


def reference_specs(names: Sequence[str] | None = None) -> list[ArchSpec]:
    """The shipped references (all of them by default)."""
    return [references.get(name) for name in (names or references.names())]


def load_spec_dir(directory: str | Path) -> list[ArchSpec]:
    """Every ``*.yaml`` / ``*.yml`` spec in ``directory`` (sorted by file name)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise SpecError("specs", str(folder), "not a directory of spec YAML files")
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not files:
        raise SpecError("specs", str(folder), "contains no .yaml spec files")
    specs = []
    for path in files:
        try:
            specs.append(ArchSpec.from_yaml(path))
        except SpecError as error:
            raise SpecError(f"{path.name}:{error.path}", error.value, error.reason) from None
    return specs


def _se_like(base: ArchSpec) -> SESpec:
    """An SE module in the style of ``base``'s own SE blocks (MnasNet-style if it has none)."""
    for block in base.blocks:
        if block.se is not None:
            return dataclasses.replace(block.se, ratio=0.25)
    return SESpec(ratio=0.25)


def reference_variant(base: ArchSpec, rng: random.Random, *, widths: Sequence[float] = (0.75, 1.0),
                      kernels: Sequence[int] = (3, 5), expansions: Sequence[int] = (3, 6)) -> ArchSpec:
    """A random relative of ``base``: one width multiplier, then per block a kernel, an
    expansion ratio, SE on or off, and one layer more or fewer."""
    scaled = base.scaled(rng.choice(list(widths)))
    se_style = _se_like(base)
    blocks: list[BlockSpec] = []
    channels = scaled.stem.channels
    for block in scaled.blocks:
        repeats = max(1, min(block.repeats + rng.choice((-1, 0, 1)), block.repeats + 1))
        changes: dict[str, Any] = {"repeats": repeats}
        if block.kind != "conv" and len(block.kernel) == 1:
            changes["kernel"] = (rng.choice(list(kernels)),)
        if block.kind == "mbconv":
            ratio = rng.choice(list(expansions))
            ins = [channels] + [block.out] * (repeats - 1)
            changes["expand"] = tuple(make_divisible(width * ratio, 8) for width in ins)
        changes["se"] = se_style if rng.random() < 0.5 else None
        blocks.append(dataclasses.replace(block, **changes))
        channels = block.out
    return dataclasses.replace(scaled, blocks=tuple(blocks), name=f"{base.name}_variant")


def reference_variants(count: int, seed: int = 0, bases: Sequence[str] = VARIANT_BASES) -> list[ArchSpec]:
    """``count`` distinct random variants of the ``bases`` references (see :func:`reference_variant`)."""
    rng = random.Random(seed)
    base_specs = [references.get(name) for name in bases]
    found: dict[str, ArchSpec] = {}
    for _ in range(50 * count + 100):  # bounded: duplicates are skipped
        if len(found) >= count:
            break
        spec = reference_variant(rng.choice(base_specs), rng)
        spec = dataclasses.replace(spec, name=f"{spec.name}_{len(found):03d}")
        found.setdefault(spec.arch_id, spec)
    return list(found.values())


def space_specs(name: str, count: int, seed: int = 0,
                options: Mapping[str, Any] | None = None) -> tuple[list[ArchSpec], str]:
    """``count`` distinct specs sampled from search space ``name`` with ``options`` (``refs``:
    random variants of the references) and a note on where they came from."""
    if name == REFERENCE_SPACE:
        return reference_variants(count, seed), "random variants of the references"
    space = get_space(name, **dict(options or {}))
    rng = random.Random(seed)
    found: dict[str, ArchSpec] = {}
    for _ in range(50 * count + 100):
        if len(found) >= count:
            break
        sample = space.sample(rng)
        spec = sample if isinstance(sample, ArchSpec) else space.decode(sample)
        found.setdefault(spec.arch_id, dataclasses.replace(spec, name=f"{name}_{len(found):03d}"))
    return list(found.values()), f"sampled from the {name!r} search space"


def source_specs(source: dict[str, Any], samples: int | None = None,
                 seed: int | None = None) -> tuple[list[ArchSpec], str]:
    """The specs of a recorded source (``{"kind": "space"|"specs"|"refs", ...}``) and a note.

    ``samples`` caps (or, for a space, sets) how many; ``seed`` overrides a space's seed.
    """
    kind = source.get("kind")
    if kind == "space":
        count = samples if samples is not None else int(source.get("samples", 50))
        return space_specs(str(source["name"]), count, source.get("seed", 0) if seed is None else seed)
    if kind == "specs":
        specs = load_spec_dir(source["dir"])
        note = f"{len(specs)} spec file(s) in {source['dir']}"
    elif kind == "refs":
        specs = reference_specs()
        note = "the shipped references"
    else:
        raise ValueError(f"source.kind: must be space, specs or refs (got {kind!r})")
    if samples is not None and samples < len(specs):
        specs = random.Random(0 if seed is None else seed).sample(specs, samples)
    return specs, note


def spread_by_cost(specs: Sequence[ArchSpec], count: int, resolution: int) -> list[ArchSpec]:
    """``count`` of ``specs`` spread evenly over their multiply-adds at ``resolution``: the
    cheapest, the costliest and evenly spaced ranks between (all of them when there are no more).

    A calibration line fitted on networks of nearly equal cost is fitted on measurement noise:
    three alike samples once gave a negative slope on a busy host, which the fit rightly refused.
    """
    if count >= len(specs):
        return list(specs)
    ranked = sorted(specs, key=lambda spec: (profile(spec, resolution).madds, spec.arch_id))
    if count == 1:
        return [ranked[len(ranked) // 2]]
    picks = sorted({round(i * (len(ranked) - 1) / (count - 1)) for i in range(count)})
    return [ranked[i] for i in picks]


def calibration_specs(source: dict[str, Any], count: int, seed: int, resolution: int) -> list[ArchSpec]:
    """The ``count`` networks a table's calibration is fitted on: drawn from ``source`` (a pool
    of :data:`CALIBRATION_POOL` candidates per network for a space) and spread by
    :func:`spread_by_cost`."""
    if count <= 0:
        return []
    pool_size = count * CALIBRATION_POOL if source.get("kind") == "space" else None
    pool, _ = source_specs(source, samples=pool_size, seed=seed)
    return spread_by_cost(pool, count, resolution)
