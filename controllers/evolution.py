"""Regularized (aging) evolution (Real et al. 2019), a classic baseline.

The first ``population_size`` proposals are uniformly random. After that, each proposal takes
``sample_size`` members of the population at random, picks the best, and changes one of its
decisions to a different choice. Every told result joins the population and the oldest member
leaves it once it holds ``population_size``; failed evaluations never join.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Mapping

import numpy as np

from controllers.base import (
    AskedTrials,
    ControllerOptionError,
    Failed,
    Trial,
    Value,
    check_state,
)
from nas.spec.checks import is_int
from search_spaces import SearchSpace

FORMAT = "nas.controllers.evolution/1"


class EvolutionController(AskedTrials):
    """Aging evolution over a search space's categorical decisions (single objective, maximised)."""

    name = "evolution"
    directions: tuple[str, ...] = ("maximize",)

    def __init__(self, space: SearchSpace, seed: int = 0, *, population_size: int = 50, sample_size: int = 10) -> None:
        for option, value, low in (("population_size", population_size, 2), ("sample_size", sample_size, 1)):
            if not is_int(value) or value < low:
                raise ControllerOptionError(self.name, option, value, f"must be an integer >= {low}")
        if sample_size > population_size:
            raise ControllerOptionError(self.name, "sample_size", sample_size, "must not exceed population_size")
        self.space = space
        self.seed = seed
        self.population_size = population_size
        self.sample_size = sample_size
        self._counts = [len(decision.choices) for decision in space.decisions]
        self._mutable = [index for index, count in enumerate(self._counts) if count > 1]
        self._rng = np.random.default_rng(seed)
        self._population: deque[tuple[list[int], float]] = deque()
        self._asked: dict[int, list[int]] = {}
        self._next_number = 0

    def _config(self) -> dict[str, Any]:
        return {"space": self.space.config(), "seed": self.seed, "population_size": self.population_size,
                "sample_size": self.sample_size}

    def _random(self) -> list[int]:
        return [int(self._rng.integers(count)) for count in self._counts]

    def _mutant(self) -> list[int]:
        members = self._rng.choice(len(self._population), size=min(self.sample_size, len(self._population)),
                                   replace=False)
        parent = max(members, key=lambda member: (self._population[member][1], -member))
        child = list(self._population[parent][0])
        if self._mutable:
            position = self._mutable[int(self._rng.integers(len(self._mutable)))]
            shift = 1 + int(self._rng.integers(self._counts[position] - 1))
            child[position] = (child[position] + shift) % self._counts[position]
        return child

    def ask(self) -> Trial:
        warming_up = self._next_number < self.population_size or not self._population
        indices = self._random() if warming_up else self._mutant()
        return self._record_ask(indices, indices)

    def tell(self, trial: Trial | int, value: Value) -> None:
        indices, checked = self._take_told(trial, value)
        if isinstance(checked, Failed):
            return
        self._population.append((indices, checked[0]))
        while len(self._population) > self.population_size:
            self._population.popleft()

    def state_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **self._config(), "rng": self._rng.bit_generator.state,
                "population": [(list(indices), value) for indices, value in self._population],
                "asked": {number: list(indices) for number, indices in self._asked.items()},
                "next_number": self._next_number}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(self.name, state, FORMAT, self._config())
        self._rng.bit_generator.state = state["rng"]
        self._population = deque((list(indices), float(value)) for indices, value in state["population"])
        self._asked = {int(number): list(indices) for number, indices in state["asked"].items()}
        self._next_number = int(state["next_number"])


__all__ = ["EvolutionController"]
