"""ArchSpec: validation, YAML round trips, identity and width scaling."""
from __future__ import annotations

import dataclasses

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from nas.spec import ArchSpec, BlockSpec, SESpec, SpecError, make_divisible
from search_spaces import references
from tests.support.specs import arch_specs


@pytest.mark.parametrize("name", references.names())
def test_reference_yaml_round_trip(name: str) -> None:
    spec = references.get(name)
    again = ArchSpec.from_yaml(spec.to_yaml())
    assert again == spec
    assert again.to_yaml() == spec.to_yaml()
    assert again.name == spec.name


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch_specs())
def test_generated_specs_yaml_round_trip(spec: ArchSpec) -> None:
    text = spec.to_yaml()
    again = ArchSpec.from_yaml(text)
    assert again == spec and again.arch_id == spec.arch_id
    assert again.to_yaml() == text
    # libyaml's emitter (dump_yaml) writes what PyYAML's own writes: exports stay byte-identical
    assert text == yaml.dump(spec.to_dict(), Dumper=yaml.SafeDumper, sort_keys=False, default_flow_style=None,
                             width=100)


def test_arch_id_is_stable_and_ignores_the_name() -> None:
    spec = references.get("mnasnet_a1")
    assert spec.arch_id == ArchSpec.from_yaml(spec.to_yaml()).arch_id
    assert spec.replace(name="renamed").arch_id == spec.arch_id
    assert len(spec.arch_id) == 12
    assert spec.with_block(2, kernel=(3,)).arch_id != spec.arch_id
    assert spec.replace(num_classes=10).arch_id != spec.arch_id


def test_arch_id_identifies_the_network_not_the_spelling() -> None:
    base = references.get("mnasnet_b1")
    first = base.blocks[0]
    as_dwsep = base.with_block(0, kind="dwsep", expand=None)
    assert first.kind == "mbconv" and first.expand == (32,)
    assert as_dwsep != base and as_dwsep.arch_id == base.arch_id
    # A1's last block can never add a residual (160 -> 320), so identity and none are one network.
    a1 = references.get("mnasnet_a1")
    assert a1.with_block(6, skip="none").arch_id == a1.arch_id


BAD_FIELDS = [
    ({"blocks": [{"kind": "mbconv", "out": 16, "kernel": 4, "expand": [32]}]}, "blocks[0].kernel"),
    ({"blocks": [{"kind": "mbconv", "out": 16, "kernel": 3}]}, "blocks[0].expand"),
    ({"blocks": [{"kind": "mbconv", "out": 16, "expand": [32, 48]}]}, "blocks[0].expand"),
    ({"blocks": [{"kind": "dwsep", "out": 16, "expand": [32]}]}, "blocks[0].expand"),
    ({"blocks": [{"kind": "sepconv", "out": 16}]}, "blocks[0].kind"),
    ({"blocks": [{"kind": "conv", "out": 0}]}, "blocks[0].out"),
    ({"blocks": [{"kind": "conv", "out": 16, "stride": 3}]}, "blocks[0].stride"),
    ({"blocks": [{"kind": "conv", "out": 16, "act": "gelu"}]}, "blocks[0].act"),
    ({"blocks": [{"kind": "conv", "out": 16, "skip": "dense"}]}, "blocks[0].skip"),
    ({"blocks": [{"kind": "conv", "out": 16, "kernel": [3, 5]}]}, "blocks[0].kernel"),
    ({"blocks": [{"kind": "dwsep", "out": 16, "se": {"ratio": 1.5}}]}, "blocks[0].se.ratio"),
    ({"blocks": [{"kind": "dwsep", "out": 16, "se": {"ratio": 0.25, "gate": "tanh"}}]}, "blocks[0].se.gate"),
    ({"blocks": [{"kind": "dwsep", "out": 16, "sx": 0.25}]}, "blocks[0].sx"),
    ({"blocks": [{"kind": "dwsep", "out": 16, "repeats": 0}]}, "blocks[0].repeats"),
    ({"blocks": [{"kind": "dwsep", "out": 16, "kernel": [3, 5, 7, 9, 11, 13, 15, 3, 5, 7, 9, 11, 13, 15, 3, 5,
                                                           7, 9, 11, 13, 15, 3, 5, 7, 9, 11, 13, 15, 3, 5, 7,
                                                           9, 11]}]}, "blocks[0].kernel"),
    ({"stem": {"channels": -3}}, "stem.channels"),
    ({"stem": {"channels": 16, "colour": "red"}}, "stem.colour"),
    ({"head": {"kind": "mobilenet_v3", "channels": 960}}, "head.hidden"),
    ({"head": {"kind": "mnasnet", "channels": 1280, "hidden": 10}}, "head.hidden"),
    ({"dropout": 1.5}, "dropout"),
    ({"resolution": "big"}, "resolution"),
    ({"bn_eps": 0}, "bn_eps"),
    ({"padding": "reflect"}, "padding"),
    ({"family": "resnet"}, "family"),
    ({"widht": 1.0}, "widht"),
    ({"blocks": []}, "blocks"),
]


def _base() -> dict:
    return {"stem": {"channels": 16}, "blocks": [{"kind": "dwsep", "out": 16}],
            "head": {"kind": "mnasnet", "channels": 64}}


@pytest.mark.parametrize("change,path", BAD_FIELDS, ids=[p for _, p in BAD_FIELDS])
def test_bad_values_name_the_field(change: dict, path: str) -> None:
    data = _base()
    data.update(change)
    with pytest.raises(SpecError) as caught:
        ArchSpec.from_dict(data)
    assert caught.value.path == path
    assert path in str(caught.value)


def test_direct_construction_names_block_index() -> None:
    spec = references.get("mobilenet_v3_small")
    with pytest.raises(SpecError, match=r"blocks\[3\]\.expand"):
        spec.with_block(3, expand=(120,))
    with pytest.raises(SpecError, match=r"blocks\[1\]\.kernel"):
        spec.with_block(1, kernel=(3,) * 80)  # more kernel groups than the 72 channels


def test_malformed_yaml_and_missing_file(tmp_path) -> None:
    with pytest.raises(SpecError, match="malformed YAML at line 2"):
        ArchSpec.from_yaml("stem: {channels: 16\nblocks: [\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        ArchSpec.from_yaml("- just\n- a list\n")
    with pytest.raises(SpecError, match="not found"):
        ArchSpec.from_yaml(tmp_path / "missing.yaml")


def test_yaml_file_and_shorthands(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("stem: {channels: 16}\nblocks:\n- {kind: mbconv, out: 24, repeats: 2, expand: 96, "
                    "kernel: [3, 5], se: 0.25}\nhead: {kind: mnasnet, channels: 128}\n")
    spec = ArchSpec.from_yaml(path)
    assert spec.blocks[0].expand == (96, 96) and spec.blocks[0].kernel == (3, 5)
    assert spec.blocks[0].se == SESpec(ratio=0.25)
    assert ArchSpec.from_yaml(str(path)) == spec


def test_specs_are_frozen() -> None:
    spec = references.get("mobilenet_v2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.resolution = 32  # type: ignore[misc]


def test_make_divisible_never_drops_more_than_ten_percent() -> None:
    for value in range(1, 2000):
        for width in (0.35, 0.5, 0.75, 1.3):
            rounded = make_divisible(value * width, 8)
            assert rounded % 8 == 0 and rounded >= 0.9 * value * width


def test_scaling_rules_per_family() -> None:
    v3 = references.get("mobilenet_v3_large", 0.75)
    assert v3.stem.channels == 16 and v3.head.hidden == 960 and v3.head.channels == 6 * v3.blocks[-1].out
    assert v3.blocks[3].expand == (make_divisible(240 * 0.75), make_divisible(200 * 0.75),
                                   make_divisible(184 * 0.75), make_divisible(184 * 0.75))
    a1 = references.get("mnasnet_a1", 0.5)
    assert a1.head.channels == 1280 and a1.stem.channels == 16
    assert a1.blocks[1].expand == (6 * 8, 6 * a1.blocks[1].out)  # expansion keeps its ratio
    v2 = references.get("mobilenet_v2", 1.4)
    assert v2.head.channels == make_divisible(1280 * 1.4)
    assert references.get("mobilenet_v2", 0.5).head.channels == 1280
    with pytest.raises(SpecError, match="width"):
        references.get("mobilenet_v2", 0.0)


def test_unknown_reference_lists_known_names() -> None:
    with pytest.raises(KeyError, match="known: .*mnasnet_a1"):
        references.get("mnasnet_c3")


def test_blockspec_defaults_are_valid() -> None:
    block = BlockSpec(kind="dwsep", out=16)
    assert block.skip == "identity" and block.kernel == (3,)
