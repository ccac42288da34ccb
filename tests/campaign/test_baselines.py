"""Baselines: the comparison of a front against the baseline curve (figures worked by hand), the
baseline specs of a space, and bad widths."""
from __future__ import annotations

import pytest

from nas.campaign.baselines import BaselinePoint, baseline_curve, baseline_specs, compare
from nas.campaign.config import config_from_dict
from nas.spec import ArchSpec
from nas.spec.errors import ConfigError
from search_spaces import get_space, references
from tests.support.campaign import tiny_config

CURVE = [BaselinePoint(0.5, "a", 1.0, 0.60), BaselinePoint(0.75, "b", 2.0, 0.70), BaselinePoint(1.0, "c", 4.0, 0.80),
         BaselinePoint(0.9, "d", 3.0, 0.65)]  # d: slower and less accurate than c... and than b's line


def test_the_curve_is_the_baselines_own_front() -> None:
    latency, accuracy = baseline_curve(CURVE)
    assert latency.tolist() == [1.0, 2.0, 4.0] and accuracy.tolist() == [0.60, 0.70, 0.80]  # d is dominated by b


def test_gain_at_equal_latency_and_speedup_at_equal_accuracy() -> None:
    # (2.0 ms, 0.75): the curve has 0.70 at 2.0 ms -> +5 points; it reaches 0.75 at 3.0 ms -> 1.5x.
    # (0.5 ms, 0.62): faster than every baseline (no gain figure); the curve reaches 0.62 at 1.2 ms -> 2.4x.
    result = compare([(2.0, 0.75), (0.5, 0.62)], CURVE)
    assert result.gain_points == pytest.approx(5.0) and result.gain_at_ms == 2.0
    assert result.speedup == pytest.approx(2.4) and result.speedup_at_accuracy == 0.62
    assert "+5.00 points at 2.000 ms" in result.describe() and "2.40x at accuracy 0.6200" in result.describe()
    # A front worse than the curve has negative figures, not none.
    worse = compare([(2.0, 0.65)], CURVE)
    assert worse.gain_points == pytest.approx(-5.0) and worse.speedup == pytest.approx(1.5 / 2.0)


def test_no_extrapolation_and_too_few_baselines() -> None:
    outside = compare([(10.0, 0.95)], CURVE)  # slower and more accurate than every baseline
    assert outside.gain_points is None and outside.speedup is None
    assert "no front point within the baselines' latency range" in outside.describe()
    one = compare([(2.0, 0.75)], CURVE[:1])
    assert one.gain_points is None and "needs at least 2" in one.describe()


def test_baselines_are_the_space_centre_at_each_width() -> None:
    config = config_from_dict(tiny_config("b", baselines={"widths": [0.5, 1.0]}))
    jobs = baseline_specs(config, num_classes=10)
    assert [job.width for job in jobs] == [0.5, 1.0]
    full = ArchSpec.from_yaml(jobs[1].spec_yaml)
    # The default MnasNet space is built around MobileNetV2: its centre at width 1.0 is MobileNetV2.
    expected = references.get("mobilenet_v2").replace(num_classes=10, resolution=16)
    assert full.replace(name=expected.name).arch_id == expected.arch_id
    space = get_space("mnasnet", **{**config.space.options, "width": 0.5})
    assert jobs[0].arch_id == space.decode(space.center()).replace(num_classes=10, resolution=16,
                                                                   name=jobs[0].arch_id).arch_id


def test_bad_baselines_are_named_errors() -> None:
    with pytest.raises(ConfigError, match=r"baselines.widths\[1\]: must be in \(0.0, 4.0\]"):
        config_from_dict(tiny_config("b", baselines={"widths": [0.5, 5.0]}))
    with pytest.raises(ConfigError, match="baselines: must be 'none' or a mapping"):
        config_from_dict(tiny_config("b", baselines=[0.5]))
    assert config_from_dict(tiny_config("b", baselines="none")).baselines.widths == ()
    # A width the space cannot express: MnasNet's space has no network at 1/100 of MobileNetV2's filters.
    config = config_from_dict(tiny_config("b", baselines={"widths": [0.001]}))
    with pytest.raises(ConfigError, match=r"baselines.widths\[0\]: 0.001 is a width the mnasnet space cannot express"):
        baseline_specs(config, num_classes=10)
