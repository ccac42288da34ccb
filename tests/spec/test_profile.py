"""Parameter and MAdds counts, checked against MindCV's own models and the papers' figures."""
from __future__ import annotations

import subprocess
import sys

import pytest

from nas.models.builder import build_network
from nas.models.netcount import count_network
from nas.spec.profile import format_table, profile
from search_spaces import references

# MindCV model name -> (our reference, width). The expected numbers come from running MindCV.
MINDCV_MODELS = [
    ("mobilenet_v3_small_100", "mobilenet_v3_small", 1.0),
    ("mobilenet_v3_small_075", "mobilenet_v3_small", 0.75),
    ("mobilenet_v3_large_100", "mobilenet_v3_large", 1.0),
    ("mobilenet_v3_large_075", "mobilenet_v3_large", 0.75),
    ("mnasnet_075", "mnasnet_b1", 0.75),
    ("mnasnet_100", "mnasnet_b1", 1.0),
    ("mnasnet_140", "mnasnet_b1", 1.4),
    ("mixnet_s", "mixnet_s", 1.0),
    ("mixnet_m", "mixnet_m", 1.0),
]


@pytest.fixture(scope="module")
def counter():
    return count_network


@pytest.mark.parametrize("model,reference,width", MINDCV_MODELS, ids=[m for m, _, _ in MINDCV_MODELS])
def test_counts_equal_mindcv(counter, model: str, reference: str, width: float) -> None:
    import mindcv

    theirs = counter(mindcv.create_model(model, num_classes=1000), 224)
    spec = references.get(reference, width)
    ours = counter(build_network(spec), 224)
    analytic = profile(spec)
    assert analytic.params_with_bn_stats == theirs.params_with_bn_stats
    assert analytic.params == theirs.params
    assert abs(ours.madds - theirs.madds) <= 0.005 * theirs.madds
    assert abs(analytic.madds - ours.madds) <= 0.001 * ours.madds


@pytest.mark.parametrize("name", ["mnasnet_a1", "mobilenet_v2"])
def test_analytic_profile_agrees_with_the_network_counter(counter, name: str) -> None:
    spec = references.get(name)
    for resolution in (224, 96):
        measured = counter(build_network(spec), resolution)
        analytic = profile(spec, resolution)
        assert analytic.params == measured.params
        assert analytic.params_with_bn_stats == measured.params_with_bn_stats
        assert abs(analytic.madds - measured.madds) <= 0.001 * measured.madds


def test_mnasnet_a1_matches_the_paper() -> None:
    result = profile(references.get("mnasnet_a1"))
    assert abs(result.params - 3_887_038) <= 0.001 * 3_887_038
    assert abs(result.madds - 311.6e6) <= 0.005 * 311.6e6
    assert abs(result.params - 3.9e6) < 0.05e6  # the paper's rounded 3.9M


@pytest.mark.parametrize("name,params,madds", [
    ("mobilenet_v3_large", 5.4e6, 219e6), ("mobilenet_v3_small", 2.5e6, 56e6), ("mnasnet_b1", 4.4e6, 315e6),
    ("mobilenet_v2", 3.4e6, 300e6), ("mixnet_s", 4.1e6, 256e6), ("mixnet_m", 5.0e6, 360e6),
])
def test_references_are_near_the_papers_rounded_figures(name: str, params: float, madds: float) -> None:
    result = profile(references.get(name))
    assert abs(result.params - params) / params < 0.04
    assert abs(result.madds - madds) / madds < 0.08  # the papers round and count SE/head slightly differently


def test_per_layer_table_is_consistent() -> None:
    result = profile(references.get("mobilenet_v3_large"))
    assert sum(row.params for row in result.layers) == result.params
    assert sum(row.madds for row in result.layers) == result.madds
    names = [row.name for row in result.layers]
    assert names[0] == "stem" and names[-1] == "classifier" and "blocks.3.2" in names
    for before, after in zip(result.layers[1:-3], result.layers[2:-2]):
        assert before.output_shape == after.input_shape


def test_profile_does_not_import_mindspore() -> None:
    code = ("import sys, nas.spec.profile, nas.spec, search_spaces.references as r;"
            "nas.spec.profile.profile(r.get('mixnet_s'));"
            "assert 'mindspore' not in sys.modules, 'mindspore was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["mnasnet_a1", "mobilenet_v3_large", "mobilenet_v3_small"])
def test_table_columns_align(name: str) -> None:
    """Every row's numeric columns end where the header's do, and no cell runs into the next."""
    lines = format_table(profile(references.get(name))).splitlines()
    header, rows = lines[0], [line for line in lines[2:] if not line.startswith(("-", "resolution"))]
    ends = [header.index(title) + len(title) for title in ("input", "output", "params", "MAdds")]
    for row in rows:
        assert len(row) == len(header), row
        for end in ends:
            assert row[end - 1] != " " and (end == len(row) or row[end] == " "), (row, end)
