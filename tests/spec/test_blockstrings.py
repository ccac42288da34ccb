"""The block-string codec: official strings, strictness, and round trips both ways."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from nas.spec import ArchSpec, SpecError
from nas.spec.blockstrings import decode_block
from nas.spec.layers import plan_layers
from search_spaces import references
from tests.support.specs import arch_specs

# Official strings, from tensorflow/tpu mnasnet_models.py and the MixNet paper code.
A1 = ["r1_k3_s11_e1_i32_o16_noskip", "r2_k3_s22_e6_i16_o24", "r3_k5_s22_e3_i24_o40_se0.25",
      "r4_k3_s22_e6_i40_o80", "r2_k3_s11_e6_i80_o112_se0.25", "r3_k5_s22_e6_i112_o160_se0.25",
      "r1_k3_s11_e6_i160_o320"]
B1 = ["r1_k3_s11_e1_i32_o16_noskip", "r3_k3_s22_e3_i16_o24", "r3_k5_s22_e3_i24_o40", "r3_k5_s22_e6_i40_o80",
      "r2_k3_s11_e6_i80_o96", "r4_k5_s22_e6_i96_o192", "r1_k3_s11_e6_i192_o320_noskip"]
MIXNET_S = ["r1_k3_a1_p1_s11_e1_i16_o16", "r1_k3_a1.1_p1.1_s22_e6_i16_o24", "r1_k3_a1.1_p1.1_s11_e3_i24_o24",
            "r1_k3.5.7_a1_p1_s22_e6_i24_o40_se0.5_sw", "r3_k3.5_a1.1_p1.1_s11_e6_i40_o40_se0.5_sw",
            "r1_k3.5.7_a1_p1.1_s22_e6_i40_o80_se0.25_sw", "r2_k3.5_a1_p1.1_s11_e6_i80_o80_se0.25_sw",
            "r1_k3.5.7_a1.1_p1.1_s11_e6_i80_o120_se0.5_sw", "r2_k3.5.7.9_a1.1_p1.1_s11_e3_i120_o120_se0.5_sw",
            "r1_k3.5.7.9.11_a1_p1_s22_e6_i120_o200_se0.5_sw", "r2_k3.5.7.9_a1_p1.1_s11_e6_i200_o200_se0.5_sw"]
TF_MNASNET = dict(family="mnasnet", bn_momentum=0.99, bn_eps=1e-3, dropout=0.2)


@pytest.mark.parametrize("name,strings", [("mnasnet_a1", A1), ("mnasnet_b1", B1)])
def test_official_mnasnet_strings_decode_to_the_references(name: str, strings: list[str]) -> None:
    spec = ArchSpec.from_block_strings(strings, stem_channels=32, head_channels=1280, **TF_MNASNET)
    assert spec == references.get(name)
    assert spec.to_block_strings() == strings


def test_official_mixnet_s_strings_decode_to_the_reference() -> None:
    spec = ArchSpec.from_block_strings(MIXNET_S, stem_channels=16, head_channels=1536, family="mixnet",
                                       bn_momentum=0.9, bn_eps=1e-5)
    assert spec == references.get("mixnet_s")
    assert spec.to_block_strings() == MIXNET_S
    assert spec.blocks[3].kernel == (3, 5, 7) and spec.blocks[4].expand_groups == 2


def test_mixnet_split_rule_gives_remainder_to_first_group() -> None:
    layer = [p for p in plan_layers(references.get("mixnet_s")) if p.kernel == (3, 5, 7, 9, 11)][0]
    assert layer.mid_channels == 720 and layer.kernel_splits() == (144, 144, 144, 144, 144)
    odd = [p for p in plan_layers(references.get("mixnet_s")) if p.kernel == (3, 5, 7)][0]
    assert sum(odd.kernel_splits()) == odd.mid_channels == 144
    assert odd.kernel_splits() == (48, 48, 48)


def test_non_integer_expansion_is_lossless() -> None:
    block = decode_block("r1_k3_s11_e2.3_i80_o80_hs", 80)
    assert block.expand == (184,)  # 80 * 2.3 is 183.99999999999997 in floating point
    v3 = references.get("mobilenet_v3_small")
    strings = v3.to_block_strings()
    assert any("e3.67" in s or "x72.88" in s for s in strings)
    assert ArchSpec.from_block_strings(strings, **{k: v for k, v in v3.block_string_options().items()
                                                   if k not in ("stem_channels", "head_channels")},
                                       stem_channels=16, head_channels=576) == v3


@pytest.mark.parametrize("name", references.names())
def test_every_reference_round_trips_through_block_strings(name: str) -> None:
    spec = references.get(name)
    again = ArchSpec.from_block_strings(spec.to_block_strings(), **spec.block_string_options())
    assert again == spec


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch_specs())
def test_generated_specs_round_trip_both_ways(spec: ArchSpec) -> None:
    strings = spec.to_block_strings()
    again = ArchSpec.from_block_strings(strings, **spec.block_string_options())
    assert again == spec
    assert again.to_block_strings() == strings


BAD_STRINGS = [
    ("r1_k3_s11_e6_i32_o16_sx0.25", "unknown token 'sx0.25'"),
    ("r1_k3_s11_e6_i32_o16_se0.25_se0.5", "duplicate se_ratio"),
    ("r1_r2_k3_s11_e6_i32_o16", "duplicate repeats"),
    ("r1_k3_s12_e6_i32_o16", "stride must be square"),
    ("r1_k3_s11_i32_o16", "exactly one of e<ratio> or x<widths>"),
    ("r1_k3_s11_e6_x96_i32_o16", "exactly one of e<ratio> or x<widths>"),
    ("r1_k3_s11_e6_i24_o16", "does not follow the previous width 32"),
    ("r1_k4_s11_e6_i32_o16", "kernel"),
    ("k3_s11_e6_i32_o16", "missing repeats"),
    ("r2_k3_s11_x96_i32_o16", "x gives 1 widths for 2 layers"),
    ("ds_r1_k3_s11_e6_i32_o16", "dwsep block takes no e/x"),
    ("r1_k3_a1.2_s11_e6_i32_o16", "grouped 1x1 convs"),
    ("r1_k3_s11_e6_i32_o16_seexp", "SE options given without an se ratio"),
    ("r1_k3_s11_e6_i32_o16_se1.5", "se ratio"),
    ("r1_k3_s11_e6_i32_o16__noskip", "unknown token ''"),
    ("", "non-empty"),
]


@pytest.mark.parametrize("text,message", BAD_STRINGS, ids=[t or "empty" for t, _ in BAD_STRINGS])
def test_malformed_strings_are_rejected(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        ArchSpec.from_block_strings([text], stem_channels=32)
    assert message in str(caught.value)
    assert caught.value.path == "blocks[0]"


def test_unknown_option_is_rejected() -> None:
    with pytest.raises(SpecError, match="unknown option"):
        ArchSpec.from_block_strings(A1, stem_channels=32, widht=1.0)
