"""Rewards that trade accuracy against latency (MnasNet, Tan et al. CVPR 2019; TuNAS, Bender et
al. CVPR 2020), and the one reward config of a campaign. Pure Python.

``reward(acc, latency_ms, target_ms, kind)`` with ``kind``:

- ``soft`` (MnasNet): ``acc * (lat / T) ** w`` with ``w = alpha`` if ``lat <= T`` else ``beta``;
  by default ``alpha = beta = w = -0.07``.
- ``hard`` (MnasNet): the same formula with ``alpha = 0`` and ``beta = -1``.
- ``abs`` (TuNAS): ``acc + beta * |lat / T - 1|``, ``beta < 0`` (default -0.10); it keeps the
  search close to T from both sides.
- ``mnas_hard`` (TuNAS): ``acc * min((lat / T) ** beta, 1)`` (default ``beta = w``): no bonus
  below T, the soft penalty above it.

MnasNet's ``w = -0.07`` comes from "doubling the latency buys about 5% relative accuracy":
``mnas_exponent(0.05, 2.0) = -log(1.05) / log(2) = -0.0704``. MobileNetV3-Small used -0.15.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from nas.spec.checks import check_number
from nas.spec.config import build_dataclass
from nas.spec.errors import FieldError

KINDS = ("soft", "hard", "abs", "mnas_hard")
DEFAULT_W = -0.07
DEFAULT_ABS_BETA = -0.10


def mnas_exponent(relative_gain: float = 0.05, latency_factor: float = 2.0) -> float:
    """The exponent ``w`` for which ``latency_factor`` x the latency is worth ``relative_gain``
    more accuracy: ``(1 + relative_gain) * latency_factor ** w == 1``."""
    if not relative_gain > -1 or not latency_factor > 0 or latency_factor == 1:
        raise ValueError(f"need relative_gain > -1 and a positive latency_factor != 1 "
                         f"(got {relative_gain!r}, {latency_factor!r})")
    return -math.log1p(relative_gain) / math.log(latency_factor)


def _exponent(name: str, value: Any) -> float:
    number = check_number(name, value)
    if number > 0:
        raise ValueError(f"{name} must be <= 0: a positive exponent would reward slower models (got {value!r})")
    return number


def reward(accuracy: float, latency_ms: float, target_ms: float, kind: str = "soft", *, w: float = DEFAULT_W,
           alpha: float | None = None, beta: float | None = None) -> float:
    """The reward of a model with ``accuracy`` and ``latency_ms`` for the target ``target_ms``.

    ``alpha``/``beta`` override the exponents (``soft``, ``hard``), the penalty slope (``abs``)
    or the exponent (``mnas_hard``). A non-positive latency or target raises ``ValueError``.
    """
    quality = check_number("accuracy", accuracy)
    latency = check_number("latency_ms", latency_ms, 0.0, low_open=True)
    ratio = latency / check_number("target_ms", target_ms, 0.0, low_open=True)
    if kind == "soft":
        low = _exponent("alpha", w if alpha is None else alpha)
        high = _exponent("beta", w if beta is None else beta)
        return quality * ratio ** (low if ratio <= 1 else high)
    if kind == "hard":
        low = _exponent("alpha", 0.0 if alpha is None else alpha)
        high = _exponent("beta", -1.0 if beta is None else beta)
        return quality * ratio ** (low if ratio <= 1 else high)
    if alpha is not None:
        raise ValueError(f"reward kind {kind!r} takes no alpha (got {alpha!r})")
    if kind == "abs":
        slope = check_number("beta", DEFAULT_ABS_BETA if beta is None else beta)
        if slope >= 0:
            raise ValueError(f"beta must be negative for the abs reward (got {beta!r})")
        return quality + slope * abs(ratio - 1.0)
    if kind == "mnas_hard":
        exponent = _exponent("beta", w if beta is None else beta)
        return quality * min(ratio ** exponent, 1.0)
    raise ValueError(f"unknown reward kind {kind!r}; known: {list(KINDS)}")


@dataclass(frozen=True)
class RewardConfig:
    """The reward of a campaign, as its YAML writes it: ``{kind, target_ms, w, alpha, beta}``.

    The default is MnasNet's search setting: the soft reward, T = 75 ms, w = -0.07. The formula's
    own checks (signs, which exponents a kind takes) run on construction, before any trial runs.
    """

    kind: str = "soft"
    target_ms: float = 75.0
    w: float = DEFAULT_W
    alpha: float | None = None
    beta: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FieldError("reward.kind", self.kind, f"unknown reward kind; known: {list(KINDS)}")
        check_number("reward.target_ms", self.target_ms, 0.0, low_open=True)
        check_number("reward.w", self.w, high=0.0)
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if value is not None:
                check_number(f"reward.{name}", value)
        try:
            self.score(0.5, self.target_ms * 0.5)
            self.score(0.5, self.target_ms * 2.0)
        except ValueError as error:
            raise ValueError(f"reward: {error}") from None

    def score(self, accuracy: float, latency_ms: float) -> float:
        """The reward of a model with ``accuracy`` and ``latency_ms``."""
        return reward(accuracy, latency_ms, self.target_ms, self.kind, w=self.w, alpha=self.alpha, beta=self.beta)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RewardConfig":
        """Build strictly from plain data; an unknown key or a bad value names ``reward.<key>``."""
        return build_dataclass(cls, data, "reward")


__all__ = ["reward", "mnas_exponent", "RewardConfig", "KINDS"]
