"""NetAdapt weight surgery keeps the function, the residual groups and the SE/depthwise shapes."""
from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest

from nas.models.builder import build_network
from nas.models.checkpoint import load_weights, read_checkpoint
from nas.models.mindcv import import_mindcv
from nas.spec import ArchSpec, BlockSpec, HeadSpec, SESpec, StemSpec
from nas.spec.layers import plan_layers
from netadapt.channels import HEAD, HIDDEN, ChannelLayout, residual_groups, structure
from netadapt.errors import SurgeryError
from netadapt.proposals import Target, TargetOptions, targets, valid_widths, width_of, with_width
from netadapt.surgery import cell_sizes, keep_indices, select_channels, shrink_weights
from netadapt.worker import shrink_network
from search_spaces import references
from tests.support.weights import random_values

REFERENCES = ["mobilenet_v3_small", "mobilenet_v3_large", "mnasnet_a1", "mixnet_s"]


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


def _small(name: str) -> ArchSpec:
    return references.get(name).replace(num_classes=10, resolution=32)


def _random_params(spec: ArchSpec, seed: int) -> dict[str, np.ndarray]:
    """Random weights and BN statistics, so that equal outputs mean equal functions."""
    return random_values(build_network(spec, seed=seed), seed)


def _net(spec: ArchSpec, params: dict[str, np.ndarray]):
    net = build_network(spec)
    load_weights(net, {name: ms.Parameter(ms.Tensor(value), name=name) for name, value in params.items()})
    net.set_train(False)
    return net


def _outputs(net, seed: int = 3, resolution: int = 32) -> np.ndarray:
    x = np.random.RandomState(seed).randn(2, 3, resolution, resolution).astype(np.float32)
    return net(ms.Tensor(x)).asnumpy()


def _shrink_everything(spec: ArchSpec, fraction: float = 0.75) -> ArchSpec:
    """Every target shrunk to its largest valid width at or below ``fraction`` of its width."""
    for target in targets(spec):
        limit = width_of(spec, target) * fraction
        for width, candidate in valid_widths(spec, target, 8):
            if width <= limit:
                spec = candidate
                break
    return spec


def _zero(params: dict[str, np.ndarray], name: str, channels: list[int], axis: int = 0) -> None:
    index = [slice(None)] * params[name].ndim
    index[axis] = channels
    params[name][tuple(index)] = 0.0


def _zero_bn(params: dict[str, np.ndarray], prefix: str, channels: list[int]) -> None:
    _zero(params, f"{prefix}.bn.beta", channels)
    _zero(params, f"{prefix}.bn.moving_mean", channels)


def _conv_weights(params, prefix: str, groups: int) -> list[str]:
    return [f"{prefix}.conv.weight"] if groups == 1 else [f"{prefix}.conv.{g}.weight" for g in range(groups)]


def _zero_filters(params, prefix: str, groups: int, channels: list[int]) -> None:
    """Zero output filters of a (possibly split) conv, and its BN shift, so those channels output 0."""
    start = 0
    for name in _conv_weights(params, prefix, groups):
        size = params[name].shape[0]
        local = [c - start for c in channels if start <= c < start + size]
        _zero(params, name, local)
        start += size
    _zero_bn(params, prefix, channels)


def _silence_removed(spec: ArchSpec, new: ArchSpec, params: dict[str, np.ndarray], seed: int) -> None:
    """Make every channel that ``new`` drops contribute exactly nothing in ``spec``'s network,
    choosing them at random in each cell of the split convs."""
    rng = np.random.RandomState(seed)
    before, after = ChannelLayout(spec), ChannelLayout(new)
    removed: dict = {}
    for key, width in before.widths.items():
        target = after.widths[key]
        if target >= width:
            continue
        chosen = []
        for start, size, new_size in cell_sizes(width, target, before.partitions[key]):
            chosen += [start + int(i) for i in rng.choice(size, size - new_size, replace=False)]
        removed[key] = sorted(chosen)
    for key, channels in removed.items():
        if key[0] == "group":
            for producer in before.group(key).producers:
                if producer == 0:
                    _zero_filters(params, "stem", 1, channels)
            for sets in before.layers:
                plan = sets.plan
                if sets.output == key:
                    if plan.kind == "conv":
                        _zero_filters(params, f"{plan.name}.conv", 1, channels)
                    else:
                        _zero_filters(params, f"{plan.name}.project", plan.project_groups, channels)
                if sets.mid == key and plan.kind != "conv":  # a depthwise conv that reads the group directly
                    _zero_bn(params, f"{plan.name}.dw", channels)
        elif key[0] == "mid":
            plan = next(s.plan for s in before.layers if s.mid == key)
            _zero_filters(params, f"{plan.name}.expand", plan.expand_groups, channels)
            _zero_bn(params, f"{plan.name}.dw", channels)
        elif key[0] == "se":
            plan = next(s.plan for s in before.layers if s.se == key)
            _zero(params, f"{plan.name}.se.reduce.weight", channels)
            _zero(params, f"{plan.name}.se.reduce.bias", channels)
        elif key == HEAD:
            _zero_filters(params, "head", 1, channels)
        elif key == HIDDEN:
            _zero(params, "hidden.weight", channels)
            _zero(params, "hidden.bias", channels)


# ----- pure logic ----------------------------------------------------------------------------------


def test_groups_follow_identity_residuals_only() -> None:
    # MobileNetV3-Large: the stem (16) and block 0 (16 -> 16, stride 1) share a residual; every
    # other block starts with a stride or a width change, so it starts a group of its own.
    spec = _small("mobilenet_v3_large")
    groups = [group.name for group in residual_groups(spec)]
    assert groups[0] == "stem+b0"
    assert all("+" not in name for name in groups[1:])
    assert len(groups) == len(spec.blocks)
    # Two consecutive stride-1 blocks of equal width are tied through the second one's first layer.
    tied = ArchSpec(stem=StemSpec(16), head=HeadSpec("mnasnet", 64), blocks=(
        BlockSpec("mbconv", 24, stride=2, expand=(48,)),
        BlockSpec("mbconv", 24, expand=(72, 72), repeats=2),
        BlockSpec("mbconv", 24, expand=(72,), skip="none"),
        BlockSpec("mbconv", 32, expand=(72,))))
    assert [g.name for g in residual_groups(tied)] == ["stem", "b0+b1", "b2", "b3"]
    pooled = tied.with_block(3, skip="pool")
    assert residual_groups(pooled)[-1].frozen is not None and residual_groups(pooled)[-2].frozen is not None
    assert "group:b2" not in [t.key for t in targets(pooled)]


def test_split_cells_keep_every_group_split_consistent() -> None:
    # 4 kernel groups and 2 grouped 1x1 convs over 360 channels: four cells of 90.
    assert cell_sizes(360, 352, {2, 4}) == [(0, 90, 88), (90, 90, 88), (180, 90, 88), (270, 90, 88)]
    # 12 channels in 4 groups of 3 cannot become 11 (split 5, 2, 2, 2): a group would grow.
    with pytest.raises(SurgeryError, match="needs 5 channels"):
        cell_sizes(12, 11, {4})
    scores = np.array([5, 1, 4, 9, 2, 3, 0.5, 7])
    assert select_channels(scores, 4).tolist() == [0, 2, 3, 7]
    assert select_channels(scores, 4, {2}).tolist() == [0, 3, 5, 7]  # the best two of each half


def test_proposals_keep_structure_and_expansion_free_layers() -> None:
    spec = _small("mobilenet_v3_small")
    group = next(t for t in targets(spec) if t.key == "group:stem")
    smaller = with_width(spec, group, 8)
    assert smaller.stem.channels == 8
    assert smaller.blocks[0].expand == (8,)  # block 0 has no expansion conv: it follows its input
    assert structure(smaller) == structure(spec)
    # Shrinking an expansion to its input width would delete the expansion conv: not a valid width.
    expand = Target("expand", block=3, layer=0)  # 40 -> 120 -> 48
    assert 40 not in [w for w, _ in valid_widths(spec, expand, 8)]
    with pytest.raises(SurgeryError, match="has_expand"):
        with_width(spec, expand, 40)
    keys = [t.key for t in targets(spec, TargetOptions(stem=False, head=False))]
    assert "group:stem" not in keys and "head" not in keys and "expand:b1.l0" in keys


# ----- real networks ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", REFERENCES)
def test_keeping_every_filter_leaves_outputs_unchanged(name: str) -> None:
    spec = _small(name)
    params = _random_params(spec, 0)
    before = _outputs(_net(spec, params))
    after = _outputs(shrink_network(spec, params, spec).set_train(False))
    np.testing.assert_array_equal(before, after)


@pytest.mark.slow
@pytest.mark.parametrize("name", REFERENCES)
def test_removing_silent_filters_keeps_outputs_equal(name: str) -> None:
    spec = _small(name)
    new = _shrink_everything(spec)
    assert new != spec
    params = _random_params(spec, 1)
    _silence_removed(spec, new, params, seed=2)
    before = _outputs(_net(spec, params))
    pruned = shrink_network(spec, params, new)
    pruned.set_train(False)
    after = _outputs(pruned)
    scale = np.abs(before).max()
    assert np.abs(before - after).max() <= 1e-5 * max(1.0, scale)
    # The silenced channels are exactly the ones surgery removed.
    keeps = keep_indices(spec, params, new)
    layout = ChannelLayout(spec)
    for key, keep in keeps.items():
        assert len(keep) == ChannelLayout(new).widths[key]
        assert len(keep) <= layout.widths[key] or key[0] == "se"


@pytest.mark.slow
@pytest.mark.parametrize("name", REFERENCES)
def test_shrunk_networks_keep_residuals_and_se_depthwise_shapes(name: str) -> None:
    spec = _small(name)
    params = _random_params(spec, 4)
    new = _shrink_everything(spec, 0.5)
    net = shrink_network(spec, params, new)  # loads strictly: every shape matches the new spec
    old_plans, new_plans = plan_layers(spec), plan_layers(new)
    assert [p.skip for p in old_plans] == [p.skip for p in new_plans]
    assert [g.producers for g in residual_groups(spec)] == [g.producers for g in residual_groups(new)]
    shapes = {name: tuple(p.shape) for name, p in net.parameters_and_names()}
    for plan in new_plans:
        if plan.kind == "conv":
            continue
        dw = [shape for key, shape in shapes.items() if key.startswith(f"{plan.name}.dw.conv")]
        assert sum(shape[0] for shape in dw) == plan.mid_channels and all(shape[1] == 1 for shape in dw)
        if plan.se_channels:
            assert shapes[f"{plan.name}.se.reduce.weight"][:2] == (plan.se_channels, plan.mid_channels)
            assert shapes[f"{plan.name}.se.expand.weight"][:2] == (plan.mid_channels, plan.se_channels)
        if plan.skip == "identity":
            assert plan.in_channels == plan.out_channels
    net.set_train(False)
    assert _outputs(net, resolution=32).shape == (2, 10)


def test_surgery_rejects_other_structures_and_foreign_weights() -> None:
    spec = _small("mnasnet_a1")
    params = _random_params(spec, 5)
    with pytest.raises(SurgeryError, match="kernel"):
        shrink_weights(spec, params, spec.with_block(2, kernel=(3,)))
    wider = spec.with_block(1, expand=tuple(w + 8 for w in spec.blocks[1].expand))
    with pytest.raises(SurgeryError, match="grows"):
        shrink_weights(spec, params, wider)
    del params["blocks.3.0.project.conv.weight"]
    with pytest.raises(SurgeryError, match="blocks.3.0.project.conv.weight"):
        shrink_weights(spec, params, _shrink_everything(spec))


def test_a_growing_squeeze_width_gets_silent_units() -> None:
    # A squeeze width derived from a shrunk width can round up; new units start at zero.
    block = BlockSpec("mbconv", 16, expand=(40,), se=SESpec(0.25, base="expand"))
    spec = ArchSpec(stem=StemSpec(16), blocks=(block,), head=HeadSpec("mnasnet", 32), num_classes=4, resolution=16)
    wider = spec.with_block(0, se=SESpec(0.5, base="expand"))
    assert (plan_layers(spec)[0].se_channels, plan_layers(wider)[0].se_channels) == (10, 20)
    params = _random_params(spec, 6)
    keeps = keep_indices(spec, params, wider)
    assert keeps[("se", 0, 0)].tolist() == list(range(10)) + [-1] * 10
    before = _outputs(_net(spec, params), resolution=16)
    after = _outputs(shrink_network(spec, params, wider).set_train(False), resolution=16)
    assert np.abs(before - after).max() <= 1e-5 * max(1.0, np.abs(before).max())


@pytest.mark.slow
def test_surgery_on_an_imported_mindcv_checkpoint(tmp_path) -> None:
    """A MindCV model brought in by ``nas import mindcv`` prunes like one of ours."""
    import mindcv

    ms.set_seed(0)
    theirs = mindcv.create_model("mobilenet_v3_small_075", num_classes=10)
    rng = np.random.RandomState(8)
    for name, param in theirs.parameters_and_names():
        if name.endswith(("moving_mean", "beta")):
            param.set_data(ms.Tensor(rng.uniform(-0.3, 0.3, param.shape).astype(np.float32)))
        elif name.endswith("moving_variance"):
            param.set_data(ms.Tensor(rng.uniform(0.5, 2.0, param.shape).astype(np.float32)))
    ms.save_checkpoint(theirs, str(tmp_path / "mindcv.ckpt"))
    spec_path, ckpt_path = import_mindcv("mobilenet_v3_small_075", tmp_path / "mindcv.ckpt", tmp_path / "imported")
    spec = ArchSpec.from_yaml(spec_path).replace(resolution=32)
    params = {name: value.asnumpy() for name, value in read_checkpoint(ckpt_path).items() if hasattr(value, "asnumpy")}
    new = _shrink_everything(spec)
    _silence_removed(spec, new, params, seed=9)
    before = _outputs(_net(spec, params))
    after = _outputs(shrink_network(spec, params, new).set_train(False))
    assert np.abs(before - after).max() <= 1e-5 * max(1.0, np.abs(before).max())
