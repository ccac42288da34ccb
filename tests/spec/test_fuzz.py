"""Fuzzing the readers of specs and configs (issue 15): valid documents are mutated (a key dropped,
renamed, or its value replaced by a random scalar, list, mapping or null) and read again. Each
read either succeeds or raises one of the project's named errors, which the CLI reports as one
line with exit code 2; never a ``TypeError``, ``AttributeError`` or a bare ``KeyError``."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.campaign.config import config_from_dict
from nas.spec.arch import ArchSpec, spec_from_dict
from nas.spec.errors import NasError, one_line
from nas.training.recipe import recipe_from_dict
from netadapt.config import NetAdaptConfig
from search_spaces import references
from tests.support.campaign import tiny_config
from tests.support.latency import tiny_spec

ROOT = Path(__file__).resolve().parents[2]
NAMED_ERRORS = (NasError, ValueError, LookupError)

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(), st.text(max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _slots(data: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) inside ``data``, depth first."""
    found: list[tuple[Any, Any]] = []
    stack = [data]
    while stack:
        node = stack.pop()
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) \
            else []
        for key, value in items:
            found.append((node, key))
            stack.append(value)
    return found


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with one to three mutations, or (rarely) replaced as a whole."""
    if draw(st.integers(0, 19)) == 0:
        return draw(VALUES)
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(data)
        if not slots:
            break
        container, key = slots[draw(st.integers(0, len(slots) - 1))]
        action = draw(st.sampled_from(["drop", "replace", "rename"]))
        if action == "drop":
            del container[key]
        elif action == "rename" and isinstance(container, dict):
            new = draw(st.one_of(st.text(max_size=8), st.just(f"{key}s"), st.just(str(key).upper())))
            container[new] = container.pop(key)
        else:
            container[key] = draw(VALUES)
    return data


def _assert_named(read: Callable[[Any], Any], data: Any) -> None:
    try:
        read(data)
    except NAMED_ERRORS as error:
        message = one_line(error)
        assert "\n" not in message and message, repr(error)
        if isinstance(error, KeyError):  # a registry's KeyError says what was unknown, not just the key
            assert " " in message, f"bare KeyError: {error!r}"


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPECS = {name: references.get(name, 1.0).to_dict() for name in ("mobilenet_v3_small", "mnasnet_a1", "mixnet_s")}
SPECS["tiny"] = tiny_spec().to_dict()


def _read_spec_both_ways(data: Any) -> None:
    try:
        text = yaml.safe_dump(data, sort_keys=False)
    except yaml.YAMLError:
        text = None
    _assert_named(spec_from_dict, data)
    if text is not None:
        _assert_named(ArchSpec.from_yaml, text)


@pytest.mark.parametrize("name", SPECS)
def test_mutated_specs_raise_only_named_errors(name: str) -> None:
    @FUZZ
    @given(mutated(SPECS[name]))
    def check(data: Any) -> None:
        _read_spec_both_ways(data)

    check()


@FUZZ
@given(mutated(tiny_config("x")))
def test_mutated_campaign_configs_raise_only_named_errors(data: Any) -> None:
    _assert_named(config_from_dict, data)


@FUZZ
@given(mutated(yaml.safe_load((ROOT / "experiments" / "recipes" / "digits_cpu.yaml").read_text())))
def test_mutated_recipes_raise_only_named_errors(data: Any) -> None:
    _assert_named(recipe_from_dict, data)


@FUZZ
@given(mutated(yaml.safe_load((ROOT / "experiments" / "netadapt" / "demo.yaml").read_text())))
def test_mutated_netadapt_configs_raise_only_named_errors(data: Any) -> None:
    _assert_named(NetAdaptConfig.from_dict, data)
