"""NetAdapt's pruning grid: one change at a time around a seed."""
from __future__ import annotations

from netadapt.channels import residual_groups
from netadapt.grid import grid_specs
from netadapt.proposals import TargetOptions
from search_spaces import references


def test_netadapt_grid_shrinks_one_expansion_or_one_tied_group_at_a_time() -> None:
    spec = references.get("mobilenet_v3_large")
    assert residual_groups(spec)[0].producers == (0, 1)  # the stem and the first block share a residual
    options = TargetOptions(head=False)
    grid = [variant for variant in grid_specs(spec, 8, options) if variant.arch_id != spec.arch_id]
    for variant in grid:
        changed = [(a, b) for a, b in zip(spec.blocks, variant.blocks) if a != b]
        assert variant.stem != spec.stem or len(changed) >= 1
    expansions = {variant.blocks[1].expand[0] for variant in grid} - {spec.blocks[1].expand[0]}
    # 16 would equal the block's input width: the block would lose its expansion conv, which no
    # filter pruning can do, so that width is not a proposal.
    assert expansions == set(range(8, 64, 8)) - {16}
    group_widths = {variant.stem.channels for variant in grid if variant.stem != spec.stem}
    assert group_widths == {8}
    assert all(variant.blocks[0].out == variant.stem.channels for variant in grid)
    coarse = grid_specs(spec, 8, options, grid_step=4)
    assert len(coarse) < len(grid) / 3
