"""Where look-up-table pieces and check samples come from: a search space, spec files, the
references (and random variants of them), or NetAdapt's channel grid of a spec.

Pure Python (no MindSpore).
"""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

from nas.spec import ArchSpec, BlockSpec, SESpec, SpecError, make_divisible

VARIANT_BASES = ("mobilenet_v2", "mnasnet_a1", "mobilenet_v3_large")
REFERENCE_SPACE = "refs"


def reference_specs(names: Sequence[str] | None = None) -> list[ArchSpec]:
    """The shipped references (all of them by default)."""
    from search_spaces import references

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
    from search_spaces import references

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


def _space_sampler(name: str):
    """``search_spaces.get_space(name)`` where the search-space registry exists, else None."""
    try:
        from search_spaces import get_space  # provided by the search-space package when present
    except ImportError:
        return None
    return get_space(name)


def space_specs(name: str, count: int, seed: int = 0) -> tuple[list[ArchSpec], str]:
    """``count`` distinct specs sampled from search space ``name`` and a note on where they came
    from. Without a search-space registry (or with ``name='refs'``), random reference variants."""
    if name == REFERENCE_SPACE:
        return reference_variants(count, seed), "random variants of the references"
    space = _space_sampler(name)
    if space is None:
        return (reference_variants(count, seed),
                f"no search-space registry yet; random variants of {', '.join(VARIANT_BASES)} instead of {name!r}")
    rng = random.Random(seed)
    found: dict[str, ArchSpec] = {}
    for _ in range(50 * count + 100):
        if len(found) >= count:
            break
        sample = space.sample(rng)
        spec = sample if isinstance(sample, ArchSpec) else space.decode(sample)
        found.setdefault(spec.arch_id, dataclasses.replace(spec, name=f"{name}_{len(found):03d}"))
    return list(found.values()), f"sampled from the {name!r} search space"


def _widths_below(current: int, divisor: int, step: int) -> list[int]:
    """Multiples of ``divisor`` below ``current`` down to ``divisor``, every ``step``-th one
    counted down from the top, always including the smallest."""
    widths = sorted(range(divisor, current, divisor), reverse=True)
    chosen = widths[step - 1::step]
    if widths and widths[-1] not in chosen:
        chosen.append(widths[-1])
    return chosen


def width_groups(spec: ArchSpec) -> list[list[int]]:
    """Producers whose output widths are tied by identity residuals (NetAdapt shrinks them together).

    Producer 0 is the stem, producer ``k + 1`` is block ``k``. Block ``k`` joins the group of the
    producer before it when its first layer is an identity residual (stride 1, same width).
    """
    groups: list[list[int]] = [[0]]
    channels = spec.stem.channels
    for index, block in enumerate(spec.blocks):
        tied = block.skip == "identity" and block.stride == 1 and block.out == channels
        if tied:
            groups[-1].append(index + 1)
        else:
            groups.append([index + 1])
        channels = block.out
    return groups


def netadapt_grid_specs(spec: ArchSpec, divisor: int = 8, step: int = 1) -> Iterator[ArchSpec]:
    """Specs on NetAdapt's channel grid around ``spec``: every expansion layer, and every group of
    widths tied by residuals, shrunk one at a time to multiples of ``divisor`` (every ``step``-th)."""
    if divisor < 1 or step < 1:
        raise ValueError(f"divisor and step must be >= 1 (got {divisor}, {step})")
    for block_index, block in enumerate(spec.blocks):
        if block.expand is None:
            continue
        for layer, width in enumerate(block.expand):
            for smaller in _widths_below(width, divisor, step):
                expand = list(block.expand)
                expand[layer] = smaller
                try:
                    yield spec.with_block(block_index, expand=tuple(expand))
                except SpecError:
                    continue
    for group in width_groups(spec):
        current = spec.stem.channels if group[0] == 0 else spec.blocks[group[0] - 1].out
        for smaller in _widths_below(current, divisor, step):
            try:
                yield spec.with_group_width(group, smaller)
            except SpecError:
                continue


def source_specs(source: dict[str, Any], samples: int | None = None, seed: int | None = None) -> tuple[list[ArchSpec], str]:
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
