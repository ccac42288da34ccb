"""Search spaces: the registry, the MnasNet and MobileNetV3 spaces, and the contract every space keeps."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nas.models.builder import build_network
from nas.spec import ArchSpec
from nas.spec.layers import plan_layers
from nas.spec.profile import profile
from search_spaces import (
    DecisionError,
    NotInSpaceError,
    SearchSpace,
    SpaceOptionError,
    UnknownSpaceError,
    get_space,
    references,
    space_from_config,
    space_names,
)

# The paper's per-block choice counts: ConvOp, KernelSize, SERatio, SkipOp, FilterSize, #Layers.
PAPER_BLOCK_CHOICES = (4, 2, 2, 3, 3, 3)

CONFIGS = {
    "mnasnet": ("mnasnet", {}),
    "mnasnet_b1_like": ("mnasnet", {"se_ratios": [0], "reference": "mnasnet_b1", "expansions": [3, 4, 6]}),
    "mnasnet_small": ("mnasnet", {"width": 0.35, "resolution": 64, "num_classes": 10, "activation": "relu"}),
    "mobilenet_v3": ("mobilenet_v3", {}),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}),
    "mobilenet_v3_mixconv": ("mobilenet_v3", {"kernels": [3, 5, [3, 5], [3, 5, 7]], "activations": ["relu", "hswish",
                                                                                                      "swish"]}),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def space(request) -> SearchSpace:
    name, options = CONFIGS[request.param]
    return get_space(name, **options)


# ----- registry and options ------------------------------------------------------------------------

def test_registry_names_and_unknown_space() -> None:
    assert {"mnasnet", "mobilenet_v3", "mobilenet_v3_small"} <= set(space_names())
    with pytest.raises(UnknownSpaceError) as error:
        get_space("mnasnet_v9")
    assert isinstance(error.value, KeyError)
    assert str(error.value) == f"unknown space 'mnasnet_v9'; known: {space_names()}"


@pytest.mark.parametrize("name,options,option", [
    ("mnasnet", {"colour": "red"}, "colour"),
    ("mnasnet", {"kernels": [4]}, "kernels"),
    ("mnasnet", {"kernels": [[3, 5]]}, "kernels"),
    ("mnasnet", {"se_ratios": [0, 2]}, "se_ratios"),
    ("mnasnet", {"expansions": [1, 6]}, "expansions"),
    ("mnasnet", {"skips": ["identity", "residual"]}, "skips"),
    ("mnasnet", {"layer_deltas": [0.5]}, "layer_deltas"),
    ("mnasnet", {"reference": "resnet50"}, "reference"),
    ("mnasnet", {"activation": "gelu"}, "activation"),
    ("mnasnet", {"resolution": 3}, "resolution"),
    ("mnasnet", {"filter_multipliers": [1.0, 1.0]}, "filter_multipliers"),
    ("mobilenet_v3", {"expand_multipliers": []}, "expand_multipliers"),
    ("mobilenet_v3", {"activations": ["tanh"]}, "activations"),
    ("mobilenet_v3", {"reference": "mixnet_s"}, "reference"),
])
def test_bad_options_raise_a_named_error(name: str, options: dict, option: str) -> None:
    with pytest.raises(SpaceOptionError) as error:
        get_space(name, **options)
    assert error.value.option == option and repr(option) in str(error.value)


def test_space_from_config_reads_yaml_style_entries() -> None:
    import yaml

    config = yaml.safe_load("name: mnasnet\nse_ratios: [0]\nkernels: [3, 5, 7]\n")
    space = space_from_config(config)
    assert space.options["se_ratios"] == [0.0] and space.options["kernels"] == [3, 5, 7]
    assert space_from_config(space.config()).decisions == space.decisions
    assert space_from_config("mnasnet").size == 432 ** 7
    with pytest.raises(SpaceOptionError):
        space_from_config({"se_ratios": [0]})


# ----- the MnasNet space ------------------------------------------------------------------------------

def test_mnasnet_space_size_is_432_to_the_7() -> None:
    space = get_space("mnasnet")
    per_block = math.prod(PAPER_BLOCK_CHOICES)
    assert per_block == 432
    assert len(space.decisions) == 7 * len(PAPER_BLOCK_CHOICES)
    for block in range(7):
        counts = tuple(len(space.decision(f"b{block}_{kind}").choices)
                       for kind in ("op", "kernel", "se", "skip", "filters", "layers"))
        assert counts == PAPER_BLOCK_CHOICES
    assert space.size == 432 ** 7 == 2807929681968365568
    assert get_space("mnasnet", se_ratios=[0]).size == 216 ** 7  # the space that produced B1
    assert get_space("mnasnet", expansions=[2, 3, 4, 6]).size == (6 * 2 * 2 * 3 * 3 * 3) ** 7


def test_mnasnet_centre_is_mobilenet_v2_exactly() -> None:
    space = get_space("mnasnet")
    centre = space.center()
    assert centre["b0_op"] == "dwsep" and all(centre[f"b{i}_op"] == "mbconv_e6" for i in range(1, 7))
    assert space.decode(centre) == references.get("mobilenet_v2")
    assert space.encode(references.get("mobilenet_v2")) == centre


@pytest.mark.parametrize("reference,options", [("mnasnet_a1", {}), ("mnasnet_b1", {"se_ratios": [0]})])
def test_mnasnet_space_centred_on_a1_and_b1_reproduces_them(reference: str, options: dict) -> None:
    space = get_space("mnasnet", reference=reference, **options)
    assert space.decode(space.center()) == references.get(reference)


def test_relu_activation_changes_only_the_activation() -> None:
    space = get_space("mnasnet", activation="relu")
    spec = space.decode(space.center())
    v2 = references.get("mobilenet_v2")
    assert spec.stem.act == spec.head.act == "relu" and {b.act for b in spec.blocks} == {"relu"}
    assert (profile(spec).params, profile(spec).madds) == (profile(v2).params, profile(v2).madds)


def test_mnasnet_filter_choices_are_three_distinct_multiples_of_8() -> None:
    space = get_space("mnasnet")
    expected = {0: (8, 16, 24), 1: (16, 24, 32), 2: (24, 32, 40), 3: (48, 64, 80), 4: (72, 96, 120),
                5: (120, 160, 200), 6: (240, 320, 400)}
    for block, widths in expected.items():
        got = []
        for multiplier in (0.75, 1.0, 1.25):
            point = dict(space.center(), **{f"b{block}_filters": multiplier})
            got.append(space.decode(point).blocks[block].out)
        assert tuple(got) == widths


def test_mnasnet_ops_layers_and_rules() -> None:
    space = get_space("mnasnet")
    point = dict(space.center(), b1_op="conv", b2_op="dwsep", b3_op="mbconv_e3", b3_layers=1, b0_layers=-1,
                 b6_layers=1, b2_skip="identity", b3_skip="pool", b4_se=0.25, b5_kernel=5)
    spec = space.decode(point)
    b = spec.blocks
    assert b[1].kind == "conv" and b[1].expand is None
    assert b[2].kind == "mbconv" and list(b[2].expand) == [24, 32, 32]  # depthwise-separable: no expansion
    assert b[3].repeats == 5 and list(b[3].expand) == [96, 192, 192, 192, 192]
    assert b[0].repeats == 1 and b[6].repeats == 2  # -1 on a one-layer block keeps one layer
    assert b[4].se.ratio == 0.25 and b[4].se.base == "in" and b[5].kernel == (5,)
    for layer in plan_layers(spec):
        assert layer.stride == (spec.blocks[layer.block].stride if layer.index == 0 else 1)
        if spec.blocks[layer.block].skip == "identity":
            legal = layer.stride == 1 and layer.in_channels == layer.out_channels
            assert (layer.skip == "identity") == legal
    assert [layer.skip for layer in plan_layers(spec) if layer.block == 2] == ["none", "identity", "identity"]


def test_mnasnet_round_trips_1000_samples_with_only_the_documented_alias() -> None:
    space = get_space("mnasnet")
    rng = np.random.default_rng(2024)
    one_layer_blocks = [i for i, block in enumerate(references.get("mobilenet_v2").blocks) if block.repeats == 1]
    assert one_layer_blocks == [0, 6]
    for _ in range(1000):
        point = space.sample(rng)
        spec = space.decode(point)
        encoded = space.encode(spec)
        expected = dict(point)
        for block in one_layer_blocks:  # -1 on a one-layer block is the same spec as 0
            if expected[f"b{block}_layers"] == -1:
                expected[f"b{block}_layers"] = 0
        assert encoded == expected
        assert space.decode(encoded) == spec
        assert profile(spec).madds > 0


def test_encode_accepts_the_dwsep_spelling() -> None:
    space = get_space("mnasnet")
    v2 = references.get("mobilenet_v2")
    spelled = v2.with_block(0, kind="dwsep", expand=None)
    assert spelled.arch_id == v2.arch_id
    assert space.encode(spelled) == space.center()


# ----- the MobileNetV3 space ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,reference", [("mobilenet_v3", "mobilenet_v3_large"),
                                            ("mobilenet_v3_small", "mobilenet_v3_small")])
def test_mobilenet_v3_centres_are_the_references_exactly(name: str, reference: str) -> None:
    space = get_space(name)
    spec = space.decode(space.center())
    assert spec == references.get(reference)
    assert space.encode(references.get(reference)) == space.center()


def test_mobilenet_v3_decisions() -> None:
    space = get_space("mobilenet_v3", kernels=[3, 5, [3, 5, 7]])
    large = references.get("mobilenet_v3_large")
    point = dict(space.center(), b2_kernel="3.5.7", b3_layers=1, b3_l4_expand=1.5, b3_l0_expand=0.5,
                 b1_se=0.25, b1_act="hswish", b5_filters=1.25)
    spec = space.decode(point)
    assert spec.blocks[2].kernel == (3, 5, 7)
    assert spec.blocks[3].repeats == 5 and spec.blocks[3].expand == (120, 200, 184, 184, 280)
    se = spec.blocks[1].se
    assert (se.ratio, se.base, se.gate, se.divisor, se.act) == (0.25, "expand", "hsigmoid", 8, "relu")
    assert spec.blocks[1].act == "hswish" and spec.blocks[5].out == 200
    assert spec.head == large.head and spec.stem == large.stem
    expansions = [d for d in space.decisions if d.name.endswith("_expand") and d.name.startswith("b3_")]
    assert len(expansions) == 5  # 4 reference layers + 1


# ----- the contract every space keeps -----------------------------------------------------------------

def test_space_contract_round_trip_and_profile(space: SearchSpace) -> None:
    assert isinstance(space, SearchSpace)
    assert space.size == math.prod(len(d.choices) for d in space.decisions)
    rng = np.random.default_rng(7)
    for _ in range(200):
        point = space.sample(rng)
        spec = space.decode(point)
        assert isinstance(spec, ArchSpec)
        encoded = space.encode(spec)
        assert space.decode(encoded) == spec
        assert space.encode(space.decode(encoded)) == encoded  # canonical points are fixed points
        for name, value in encoded.items():  # every difference is a true alias
            if value != point[name]:
                assert space.decode(dict(point, **{name: value})) == spec, name
        result = profile(spec)
        assert result.params > 0 and result.madds > 0


def test_space_contract_sampling_is_seeded(space: SearchSpace) -> None:
    first = [space.sample(np.random.default_rng(3)) for _ in range(3)]
    again = [space.sample(np.random.default_rng(3)) for _ in range(3)]
    assert first == again
    assert space.sample(np.random.default_rng(4)) != space.sample(np.random.default_rng(5))
    import random

    assert space.sample(random.Random(1)) == space.sample(random.Random(1))
    assert space.sample(11) == space.sample(np.random.default_rng(11))


def test_space_contract_bad_decisions_name_the_decision(space: SearchSpace) -> None:
    point = space.center()
    name = space.decisions[3].name
    missing = {k: v for k, v in point.items() if k != name}
    with pytest.raises(DecisionError) as error:
        space.decode(missing)
    assert error.value.decision == name and "missing" in str(error.value)
    with pytest.raises(DecisionError) as error:
        space.decode(dict(point, **{name: "not-a-choice"}))
    assert error.value.decision == name and "must be one of" in str(error.value)
    with pytest.raises(DecisionError) as error:
        space.decode(dict(point, b99_colour=1))
    assert error.value.decision == "b99_colour"
    with pytest.raises(DecisionError):
        space.decode(dict(point, **{name: True}))


def test_space_contract_encode_rejects_specs_outside(space: SearchSpace) -> None:
    spec = space.decode(space.center())
    outside = {
        "resolution": spec.replace(resolution=spec.resolution + 16),
        "blocks[1].out": spec.with_block(1, out=spec.blocks[1].out + 1),
        "blocks[2].stride": spec.with_block(2, stride=3 - spec.blocks[2].stride),
        "blocks": spec.replace(blocks=spec.blocks[:-1]),
        "blocks[0].repeats": spec.with_block(0, repeats=9, expand=(spec.blocks[0].expand or (16,))[:1] * 9
                                             if spec.blocks[0].expand else None),
    }
    for path, bad in outside.items():
        with pytest.raises(NotInSpaceError) as error:
            space.encode(bad)
        assert error.value.path.startswith(path), (path, error.value.path)


# ----- decoded specs build -------------------------------------------------------------------------------

def _covering_points(space: SearchSpace, count: int) -> list[dict]:
    """``count`` points that together use every choice of every decision."""
    return [space.from_indices([(k + i) % len(d.choices) for i, d in enumerate(space.decisions)])
            for k in range(count)]


@pytest.mark.parametrize("name,options,count", [
    ("mnasnet", {"resolution": 32, "num_classes": 10}, 4),
    ("mobilenet_v3", {"resolution": 32, "num_classes": 10, "kernels": [3, 5, [3, 5, 7]]}, 5),
])
def test_decoded_specs_covering_every_choice_build_and_run(name: str, options: dict, count: int) -> None:
    import mindspore as ms

    space = get_space(name, **options)
    points = _covering_points(space, count)
    for decision in space.decisions:
        assert {point[decision.name] for point in points} == set(decision.choices)
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        for point in points:
            spec = space.decode(point)
            net = build_network(spec, seed=0)
            net.set_train(False)
            x = ms.Tensor(np.random.RandomState(0).rand(2, 3, 32, 32).astype(np.float32))
            logits = net(x).asnumpy()
            assert logits.shape == (2, 10) and np.isfinite(logits).all()
            assert sum(p.size for p in net.trainable_params()) == profile(spec).params
    finally:
        ms.set_context(mode=previous)
