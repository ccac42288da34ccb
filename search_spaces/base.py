"""The search-space interface: named categorical decisions that decode into an :class:`ArchSpec`.

A space is a fixed, ordered list of :class:`Decision` objects. A point of the space is a plain
dict ``{decision name: choice}`` whose values are JSON/YAML scalars (str, int, float), so a
point is also a valid Optuna parameter set. Pure Python: nothing here imports MindSpore.

Several points can decode to one spec (for example the layer decision "-1" of a block that has
one layer). ``encode`` returns the *canonical* point of a spec: for each decision, the choice
closest to the space's centre among those that reproduce the spec.
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Protocol, Sequence, Union, runtime_checkable

import numpy as np

from nas.spec import ArchSpec, make_divisible, spec_to_dict
from nas.spec.checks import is_int, is_number
from nas.spec.errors import SpecError
from search_spaces import references

Choice = Union[int, float, str]


class SpaceError(ValueError):
    """Base of the search-space errors (a ``ValueError``: the CLI reports it in one line)."""


class UnknownSpaceError(KeyError):
    """A space name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown space"


class SpaceOptionError(SpaceError):
    """A space option is unknown or has a bad value. ``option`` names it."""

    def __init__(self, option: str, value: Any, reason: str) -> None:
        self.option = option
        self.value = value
        super().__init__(f"space option {option!r}: {reason} (got {value!r})")


class DecisionError(SpaceError):
    """A point is missing a decision, has an unknown one, or a value outside its choices."""

    def __init__(self, decision: str, value: Any, reason: str) -> None:
        self.decision = decision
        self.value = value
        super().__init__(f"decision {decision!r}: {reason} (got {value!r})")


class NotInSpaceError(SpaceError):
    """``encode`` was given a spec that no point of the space decodes to. ``path`` names the
    first field of the spec that is out of the space."""

    def __init__(self, space: str, path: str, value: Any, reason: str) -> None:
        self.space = space
        self.path = path
        self.value = value
        super().__init__(f"spec is not in space {space!r}: {path}: {reason} (got {value!r})")


def _check_choice_value(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SpaceError(f"decision {name!r}: choice {value!r} must be an int, float or str")
    if isinstance(value, float) and not math.isfinite(value):
        raise SpaceError(f"decision {name!r}: choice {value!r} must be finite")


@dataclass(frozen=True)
class Decision:
    """One categorical decision: a name and its ordered choices."""

    name: str
    choices: tuple[Choice, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpaceError(f"a decision needs a non-empty name (got {self.name!r})")
        if not isinstance(self.choices, tuple) or not self.choices:
            raise SpaceError(f"decision {self.name!r}: choices must be a non-empty tuple")
        for value in self.choices:
            _check_choice_value(self.name, value)
        if len(set(self.choices)) != len(self.choices):
            raise SpaceError(f"decision {self.name!r}: duplicate choices in {list(self.choices)}")

    def index(self, value: Any) -> int:
        """The position of ``value`` among the choices; :class:`DecisionError` if absent."""
        if not isinstance(value, bool) and isinstance(value, (int, float, str)):
            for position, choice in enumerate(self.choices):
                if choice == value and isinstance(choice, str) == isinstance(value, str):
                    return position
        raise DecisionError(self.name, value, f"must be one of {list(self.choices)}")


@runtime_checkable
class SearchSpace(Protocol):
    """What every search space offers (the campaign and the controllers rely on these)."""

    @property
    def name(self) -> str:
        """The registry name."""

    @property
    def decisions(self) -> tuple[Decision, ...]:
        """The ordered decisions."""

    @property
    def size(self) -> int:
        """The number of points: the product of the choice counts."""

    @property
    def options(self) -> dict[str, Any]:
        """The resolved options (plain data; ``get_space(name, **options)`` rebuilds the space)."""

    def decode(self, decisions: Mapping[str, Any]) -> ArchSpec:
        """The spec of a point. Missing, unknown or out-of-range decisions raise DecisionError."""

    def encode(self, spec: ArchSpec) -> dict[str, Any]:
        """The canonical point of ``spec``; :class:`NotInSpaceError` if none decodes to it."""

    def sample(self, rng: Any) -> dict[str, Any]:
        """A uniformly random point (``rng``: a numpy Generator, a random.Random or a seed)."""

    def center(self) -> dict[str, Any]:
        """The point that reproduces the space's reference network."""

    def indices(self, decisions: Mapping[str, Any]) -> list[int]:
        """The choice index of every decision, in decision order."""

    def config(self) -> dict[str, Any]:
        """``{"name": ..., **options}``: what ``space_from_config`` rebuilds the space from."""


def as_generator(rng: Any) -> Any:
    """Accept a numpy Generator, a ``random.Random`` or an integer seed."""
    if isinstance(rng, (np.random.Generator, random.Random)):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator, a random.Random or an int seed (got {type(rng).__name__})")


class FactorizedSpace:
    """Shared machinery: validation, sampling, size and index conversion over ``decisions``.

    Subclasses set ``self._name``, ``self._decisions`` and ``self._options`` and implement
    ``decode``, ``encode`` and ``center``.
    """

    _name: str
    _decisions: tuple[Decision, ...]
    _options: dict[str, Any]
    settings: Any

    @property
    def name(self) -> str:
        return self._name

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return self._decisions

    @property
    def options(self) -> dict[str, Any]:
        return dict(self._options)

    @property
    def size(self) -> int:
        return math.prod(len(decision.choices) for decision in self._decisions)

    def decision(self, name: str) -> Decision:
        """The decision called ``name``."""
        for decision in self._decisions:
            if decision.name == name:
                return decision
        raise DecisionError(name, None, f"unknown decision of space {self._name!r}")

    def validate(self, decisions: Mapping[str, Any]) -> dict[str, Any]:
        """The point as an ordered dict, after checking every decision is present and valid."""
        if not isinstance(decisions, Mapping):
            raise DecisionError("*", decisions, "decisions must be a mapping of decision name to choice")
        known = {decision.name for decision in self._decisions}
        for key in decisions:
            if key not in known:
                raise DecisionError(str(key), decisions[key], f"unknown decision of space {self._name!r}")
        point: dict[str, Any] = {}
        for decision in self._decisions:
            if decision.name not in decisions:
                raise DecisionError(decision.name, None, "missing")
            point[decision.name] = decision.choices[decision.index(decisions[decision.name])]
        return point

    def indices(self, decisions: Mapping[str, Any]) -> list[int]:
        """The choice positions of a point, in decision order."""
        point = self.validate(decisions)
        return [decision.index(point[decision.name]) for decision in self._decisions]

    def from_indices(self, indices: Sequence[int]) -> dict[str, Any]:
        """The point with these choice positions (in decision order)."""
        if len(indices) != len(self._decisions):
            raise DecisionError("*", list(indices), f"expected {len(self._decisions)} choice indices")
        point: dict[str, Any] = {}
        for decision, position in zip(self._decisions, indices):
            if isinstance(position, bool) or not 0 <= int(position) < len(decision.choices):
                raise DecisionError(decision.name, position, f"index out of range [0, {len(decision.choices)})")
            point[decision.name] = decision.choices[int(position)]
        return point

    def sample(self, rng: Any) -> dict[str, Any]:
        generator = as_generator(rng)
        if isinstance(generator, random.Random):
            return self.from_indices([generator.randrange(len(d.choices)) for d in self._decisions])
        return self.from_indices([int(generator.integers(len(d.choices))) for d in self._decisions])

    def _configure(self, name: str, options_type: type, options: Mapping[str, Any]) -> Any:
        """Set the name and the parsed options (``self.settings``); return the settings."""
        self._name = name
        self.settings = parse_options(options_type, options)
        self._options = options_to_data(self.settings)
        return self.settings

    def _lookup(self, path: str, decision: str, value: Any, table: Mapping[Any, Any]) -> Any:
        """The choice of ``decision`` that gives ``value`` at spec field ``path`` (for ``encode``)."""
        if value not in table:
            raise NotInSpaceError(self._name, path, value,
                                  f"no choice of decision {decision!r} gives it (possible: {sorted(table, key=str)})")
        return table[value]

    def _check_block_count(self, spec: ArchSpec, count: int) -> None:
        if not isinstance(spec, ArchSpec):
            raise TypeError(f"encode takes an ArchSpec (got {type(spec).__name__})")
        if len(spec.blocks) != count:
            raise NotInSpaceError(self._name, "blocks", len(spec.blocks), f"the space has {count} blocks")

    def _named(self, reference: ArchSpec, blocks: Sequence[Any]) -> ArchSpec:
        """``reference`` with these blocks, named after the space and the architecture id."""
        spec = reference.replace(blocks=tuple(blocks))
        return spec.replace(name=f"{self._name}-{spec.arch_id}")

    def decode(self, decisions: Mapping[str, Any]) -> ArchSpec:
        raise NotImplementedError  # each space decodes its own decisions

    def encode(self, spec: ArchSpec) -> dict[str, Any]:
        raise NotImplementedError  # each space encodes into its own decisions

    def canonical(self, decisions: Mapping[str, Any]) -> dict[str, Any]:
        """The canonical point that decodes to the same spec as ``decisions``."""
        return self.encode(self.decode(decisions))

    def config(self) -> dict[str, Any]:
        """``{"name": ..., **options}``: what ``space_from_config`` rebuilds this space from."""
        return {"name": self._name, **self.options}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r}: {len(self._decisions)} decisions, size {self.size:.3e}>"


# ----- helpers shared by the spaces ------------------------------------------------------------

def relative_widths(reference: int, multipliers: Iterable[float], divisor: int = 8) -> dict[float, int]:
    """Width for each multiplier of ``reference``: ``make_divisible(reference * m, divisor)``.

    Where that rounding falls back onto the reference width for a multiplier other than 1,
    the width moves one ``divisor`` step in the multiplier's direction (never below
    ``divisor``), so that 0.75 / 1.0 / 1.25 of 16 give 8 / 16 / 24, not 16 / 16 / 24.
    """
    widths: dict[float, int] = {}
    for multiplier in multipliers:
        width = make_divisible(reference * multiplier, divisor)
        if width == reference and multiplier < 1 and reference - divisor >= divisor:
            width = reference - divisor
        elif width == reference and multiplier > 1:
            width = reference + divisor
        widths[multiplier] = width
    return widths


def preferred_order(choices: Sequence[Any], centre: Any) -> list[Any]:
    """The choices ordered by closeness to ``centre`` (numbers) or with ``centre`` first."""
    if all(isinstance(c, (int, float)) for c in choices) and isinstance(centre, (int, float)):
        return sorted(choices, key=lambda c: (abs(c - centre), c))
    return sorted(choices, key=lambda c: c != centre)


def inverse_lookup(table: Mapping[Any, Any], centre: Any) -> dict[Any, Any]:
    """Map each value of ``table`` back to its key, preferring keys close to ``centre``."""
    inverse: dict[Any, Any] = {}
    for key in preferred_order(list(table), centre):
        inverse.setdefault(table[key], key)
    return inverse


def first_difference(expected: ArchSpec, actual: ArchSpec) -> tuple[str, Any, Any] | None:
    """The first field path where two specs differ (the name is ignored), or None."""

    def walk(a: Any, b: Any, path: str) -> tuple[str, Any, Any] | None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in list(a) + [k for k in b if k not in a]:
                if key == "name" and not path:
                    continue
                found = walk(a.get(key), b.get(key), f"{path}.{key}" if path else key)
                if found:
                    return found
            return None
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for index, (x, y) in enumerate(zip(a, b)):
                found = walk(x, y, f"{path}[{index}]")
                if found:
                    return found
            return None
        return None if a == b else (path, a, b)

    return walk(spec_to_dict(expected), spec_to_dict(actual), "")


def check_round_trip(space_name: str, spec: ArchSpec, decoded: ArchSpec) -> None:
    """Raise :class:`NotInSpaceError` at the first field where ``decoded`` differs from ``spec``."""
    difference = first_difference(decoded, spec)
    if difference is not None:
        path, wanted, got = difference
        raise NotInSpaceError(space_name, path, got, f"the nearest point of the space has {wanted!r} there")


# ----- the reference a space is built around -----------------------------------------------------

def load_reference(name: str, width: float) -> ArchSpec:
    """The reference spec a space is built around (a named reference, scaled)."""
    if name not in references.names():
        raise SpaceOptionError("reference", name, f"unknown reference; known: {references.names()}")
    try:
        return references.get(name, width)
    except SpecError as error:
        raise SpaceOptionError("width", width, error.reason) from None


def configured_reference(settings: Any) -> ArchSpec:
    """The reference of a space's settings (``reference``, ``width``) with their overrides."""
    return apply_overrides(load_reference(settings.reference, settings.width), settings.resolution,
                           settings.num_classes, settings.dropout)


def apply_overrides(spec: ArchSpec, resolution: int | None, num_classes: int | None,
                    dropout: float | None) -> ArchSpec:
    """The reference with the resolution, class count and dropout options applied."""
    changes = {key: value for key, value in
               (("resolution", resolution), ("num_classes", num_classes), ("dropout", dropout)) if value is not None}
    try:
        return spec.replace(**changes)
    except SpecError as error:
        raise SpaceOptionError(error.path, error.value, error.reason) from None


# ----- option parsing ---------------------------------------------------------------------------

def parse_options(options_type: type, options: Mapping[str, Any]) -> Any:
    """Build the frozen options dataclass ``options_type`` from plain data (YAML lists become
    tuples); an unknown option raises :class:`SpaceOptionError` listing the known ones."""
    if not isinstance(options, Mapping):
        raise SpaceOptionError("options", options, "must be a mapping of option name to value")
    fields = {field.name: field for field in dataclasses.fields(options_type)}
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in fields:
            raise SpaceOptionError(str(key), value, f"unknown option; known: {sorted(fields)}")
        values[key] = _as_tuples(value)
    return options_type(**values)


def _as_tuples(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(item) for item in value)
    return value


def options_to_data(options: Any) -> dict[str, Any]:
    """Plain data (lists, not tuples) for a frozen options dataclass."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(item) for item in value]
        return value

    return {field.name: plain(getattr(options, field.name)) for field in dataclasses.fields(options)}


def check_number_tuple(option: str, value: Any, *, low: float, high: float, integer: bool = False,
                       low_open: bool = False) -> None:
    """``value`` must be a non-empty tuple of distinct numbers in [low, high]."""
    if not isinstance(value, tuple) or not value:
        raise SpaceOptionError(option, value, "must be a non-empty list")
    for item in value:
        if not (is_int(item) if integer else is_number(item)):
            raise SpaceOptionError(option, value, f"every entry must be {'an integer' if integer else 'a number'}")
        if item < low or item > high or (low_open and item == low):
            raise SpaceOptionError(option, value, f"entries must be in {'(' if low_open else '['}{low}, {high}]")
    if len(set(value)) != len(value):
        raise SpaceOptionError(option, value, "entries must be distinct")


def check_str_tuple(option: str, value: Any, allowed: Sequence[str]) -> None:
    """``value`` must be a non-empty tuple of distinct strings from ``allowed``."""
    if not isinstance(value, tuple) or not value:
        raise SpaceOptionError(option, value, "must be a non-empty list")
    for item in value:
        if item not in allowed:
            raise SpaceOptionError(option, value, f"entries must be among {list(allowed)}")
    if len(set(value)) != len(value):
        raise SpaceOptionError(option, value, "entries must be distinct")


def kernel_choices(option: str, value: Any, *, allow_mixed: bool) -> dict[Choice, tuple[int, ...]]:
    """Kernel choices: an int is one kernel size, a list of ints a MixConv kernel set. Returns
    ``{choice value: kernel tuple}`` where a kernel set's choice value is written "3.5.7"."""
    if not isinstance(value, tuple) or not value:
        raise SpaceOptionError(option, value, "must be a non-empty list of kernel sizes or kernel sets")
    table: dict[Choice, tuple[int, ...]] = {}
    for item in value:
        kernel = item if isinstance(item, tuple) else (item,)
        if len(kernel) > 1 and not allow_mixed:
            raise SpaceOptionError(option, value, "this space takes single kernel sizes only")
        if not kernel or any(not is_int(k) or k < 1 or k > 15 or k % 2 == 0
                             for k in kernel):
            raise SpaceOptionError(option, value, "kernel sizes must be odd integers in [1, 15]")
        choice: Choice = kernel[0] if len(kernel) == 1 else ".".join(str(k) for k in kernel)
        if choice in table:
            raise SpaceOptionError(option, value, "entries must be distinct")
        table[choice] = kernel
    return table


__all__ = [
    "Choice", "Decision", "SearchSpace", "FactorizedSpace", "SpaceError", "UnknownSpaceError",
    "SpaceOptionError", "DecisionError", "NotInSpaceError", "relative_widths", "parse_options",
]
