"""The MnasNet and TuNAS rewards, checked against their published formulas (MnasNet eq. 2, TuNAS eq. 1 and 2)."""
from __future__ import annotations

import math

import pytest

from nas.campaign.reward import RewardConfig, mnas_exponent, reward


def test_the_mnasnet_exponent_comes_from_5_percent_per_doubling() -> None:
    w = mnas_exponent(0.05, 2.0)
    assert round(w, 4) == -0.0704
    assert math.isclose(1.05 * 2 ** w, 1.0)
    # Under that w, twice the latency with 5% more accuracy is worth exactly the same.
    assert math.isclose(reward(0.70 * 1.05, 150.0, 75.0, w=w), reward(0.70, 75.0, 75.0, w=w))
    assert mnas_exponent(0.05, 2.0) > mnas_exponent(0.10, 2.0)


@pytest.mark.parametrize("latency", [20.0, 60.0, 75.0, 80.0, 150.0, 300.0])
def test_soft_reward_is_acc_times_ratio_to_the_w(latency: float) -> None:
    assert math.isclose(reward(0.75, latency, 75.0), 0.75 * (latency / 75.0) ** -0.07)
    assert math.isclose(reward(0.75, latency, 75.0, "soft", w=-0.15), 0.75 * (latency / 75.0) ** -0.15)


def test_soft_reward_takes_separate_alpha_and_beta() -> None:
    assert math.isclose(reward(0.8, 50.0, 100.0, alpha=-0.02, beta=-0.5), 0.8 * 0.5 ** -0.02)
    assert math.isclose(reward(0.8, 200.0, 100.0, alpha=-0.02, beta=-0.5), 0.8 * 2.0 ** -0.5)


@pytest.mark.parametrize("latency,expected", [(30.0, 0.75), (75.0, 0.75), (100.0, 0.75 * 75.0 / 100.0),
                                              (150.0, 0.375)])
def test_hard_reward_keeps_acc_below_target_and_divides_above(latency: float, expected: float) -> None:
    assert math.isclose(reward(0.75, latency, 75.0, "hard"), expected)


@pytest.mark.parametrize("latency,expected", [(75.0, 0.7), (90.0, 0.7 - 0.1 * 0.2), (60.0, 0.7 - 0.1 * 0.2),
                                              (150.0, 0.6)])
def test_tunas_abs_reward(latency: float, expected: float) -> None:
    assert math.isclose(reward(0.7, latency, 75.0, "abs"), expected)
    assert math.isclose(reward(0.7, latency, 75.0, "abs", beta=-0.5), 0.7 - 0.5 * abs(latency / 75.0 - 1))


@pytest.mark.parametrize("latency", [30.0, 75.0, 100.0, 300.0])
def test_tunas_mnas_hard_reward(latency: float) -> None:
    expected = 0.7 * min((latency / 75.0) ** -0.07, 1.0)
    assert math.isclose(reward(0.7, latency, 75.0, "mnas_hard"), expected)
    assert reward(0.7, latency, 75.0, "mnas_hard") <= 0.7
    assert math.isclose(reward(0.7, latency, 75.0, "mnas_hard", beta=-1.0), 0.7 * min(75.0 / latency, 1.0))


@pytest.mark.parametrize("kwargs,field", [
    ({"latency_ms": 0.0}, "latency_ms"), ({"latency_ms": -5.0}, "latency_ms"), ({"target_ms": 0.0}, "target_ms"),
    ({"target_ms": -75.0}, "target_ms"), ({"latency_ms": math.nan}, "latency_ms"), ({"accuracy": math.inf}, "accuracy"),
    ({"kind": "linear"}, "linear"), ({"w": 0.07}, "alpha"), ({"kind": "hard", "beta": 1.0}, "beta"),
    ({"kind": "abs", "beta": 0.1}, "beta"), ({"kind": "abs", "alpha": -0.1}, "alpha"),
])
def test_bad_input_raises_value_error_naming_it(kwargs: dict, field: str) -> None:
    arguments = {"accuracy": 0.7, "latency_ms": 70.0, "target_ms": 75.0, **kwargs}
    with pytest.raises(ValueError, match=field):
        reward(arguments.pop("accuracy"), arguments.pop("latency_ms"), arguments.pop("target_ms"), **arguments)


def test_reward_config_from_yaml_data() -> None:
    config = RewardConfig.from_dict({"kind": "soft", "target_ms": 75, "w": -0.15})
    assert math.isclose(config.score(0.67, 15.8), reward(0.67, 15.8, 75, w=-0.15))
    with pytest.raises(ValueError, match="reward.colour"):
        RewardConfig.from_dict({"target_ms": 75, "colour": "red"})
    assert RewardConfig.from_dict({"kind": "hard"}).target_ms == 75.0  # MnasNet's 75 ms target
    with pytest.raises(ValueError, match="target_ms"):
        RewardConfig.from_dict({"kind": "hard", "target_ms": "fast"})
    with pytest.raises(ValueError, match="target_ms"):
        RewardConfig(target_ms=0)
    with pytest.raises(ValueError, match="unknown reward kind"):
        RewardConfig(target_ms=75, kind="linear")
