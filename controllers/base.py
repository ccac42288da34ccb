"""The ask/tell interface shared by every controller, its trial and value types, and errors.

    trial = controller.ask()                  # Trial(number, decisions)
    controller.tell(trial, 0.71)              # a reward (single objective: maximised)
    controller.tell(trial, (0.74, 61.0))      # one value per direction (multi-objective)
    controller.tell(trial, Failed("OOM"))     # a failed evaluation: a trial state, not a crash

A controller proposes decisions and learns from the values it is told; it never trains or
measures anything. ``state_dict()`` / ``load_state_dict()`` make a run resumable: a controller
restored from a state continues with exactly the proposals the original would have made.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, Union, runtime_checkable

from nas.spec.checks import is_int, is_number
from nas.spec.errors import NasError
from search_spaces import SearchSpace


class ControllerError(NasError):
    """A controller was misused (a bad state, an option that does not apply, ...)."""


class UnknownControllerError(KeyError):
    """A controller name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown controller"


class UnknownTrialError(ControllerError, LookupError):
    """``tell`` on a trial this controller did not ask, or already told."""


class ControllerOptionError(ControllerError, ValueError):
    """An unknown controller option, or a bad option value. ``option`` names it."""

    def __init__(self, controller: str, option: str, value: Any, reason: str) -> None:
        self.option = option
        self.value = value
        super().__init__(f"controller {controller!r} option {option!r}: {reason} (got {value!r})")


class TellValueError(ControllerError, ValueError):
    """A told value does not fit the controller's objectives (e.g. a tuple to a single one)."""


@dataclass(frozen=True)
class Trial:
    """A proposal: its number (unique within the controller or study) and its decisions."""

    number: int
    decisions: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True)
class Failed:
    """Tell this instead of a value when the evaluation failed."""

    reason: str = "failed"


Value = Union[float, Sequence[float], Failed]


class AskedTrials:
    """Ask/tell bookkeeping shared by the in-house controllers: numbers trials, remembers what
    each asked trial needs at tell time, and checks a tell. Uses ``_asked``, ``_next_number``,
    ``space``, ``name`` and ``directions`` of the controller."""

    _asked: dict[int, Any]
    _next_number: int

    def _record_ask(self, indices: Sequence[int], payload: Any) -> Trial:
        """A new trial for the choice ``indices``; ``payload`` comes back at its tell."""
        number = self._next_number
        self._next_number += 1
        self._asked[number] = payload
        return Trial(number, self.space.from_indices(indices))  # type: ignore[attr-defined]

    def _take_told(self, trial: "Trial | int", value: Any) -> tuple[Any, "tuple[float, ...] | Failed"]:
        """The payload of an asked trial and its checked value; the trial counts as told."""
        number = trial_number(trial)
        if number not in self._asked:
            raise UnknownTrialError(f"controller {self.name!r}: trial {number} "  # type: ignore[attr-defined]
                                    "was not asked or was already told")
        checked = check_value(self.name, value, self.directions)  # type: ignore[attr-defined]
        return self._asked.pop(number), checked


@runtime_checkable
class Controller(Protocol):
    """What the campaign relies on."""

    name: str
    space: SearchSpace
    directions: tuple[str, ...]  # "maximize"/"minimize", one per told value

    def ask(self) -> Trial:
        """The next proposal."""

    def tell(self, trial: Trial | int, value: Value) -> None:
        """The result of a proposal (a ``Trial`` or its number)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this controller is: plain data, tuples and
        NumPy arrays (what :mod:`controllers.statefile` saves; no arbitrary objects)."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` into a controller built with the same
        space, seed and options."""


@runtime_checkable
class StudyController(Controller, Protocol):
    """A controller that drives an Optuna study: everything a campaign driver uses.

    :func:`controllers.optuna_bridge.study_controller` makes one of every registered controller.
    """

    study: Any  # the optuna.Study that records every trial

    def tell(self, trial: Trial | int, value: Value, *,  # type: ignore[override]
             user_attrs: Mapping[str, Any] | None = None) -> None:
        """Finish a trial; ``user_attrs`` (JSON-serialisable) are stored on the study's trial."""

    def ask_fixed(self, decisions: Mapping[str, Any]) -> Trial:
        """A trial with fixed decisions (a re-run), recorded in the study and proposed by nobody:
        the controller's own sampler is not told its result."""

    def set_user_attrs(self, trial: Trial | int, attrs: Mapping[str, Any]) -> None:
        """Store attributes on a trial that is still running (visible if the driver dies)."""

    def pending_numbers(self) -> list[int]:
        """Trials asked and not yet told, plus those the study finished after the last saved state."""

    def replay(self, frozen_trial: Any) -> None:
        """Tell the sampler about a trial the study finished after the saved state was taken."""

    def load_state_dict(self, state: Mapping[str, Any], *,  # type: ignore[override]
                        allow_later_trials: bool = False) -> None:
        """Restore a saved state; ``allow_later_trials`` accepts a study that gained trials after
        the save (the caller settles them with :meth:`replay` or a failure)."""


def trial_number(trial: Trial | int) -> int:
    """The number of a trial given as a ``Trial`` or an int."""
    if isinstance(trial, Trial):
        return trial.number
    if is_int(trial):
        return int(trial)
    raise UnknownTrialError(f"tell takes a Trial or a trial number (got {trial!r})")


def check_value(controller: str, value: Any, directions: Sequence[str]) -> tuple[float, ...] | Failed:
    """``value`` as a tuple with one finite float per direction, or the ``Failed`` marker."""
    if isinstance(value, Failed):
        return value
    if value is None:
        raise TellValueError(f"controller {controller!r}: tell a value, or Failed(reason) for a failed evaluation")
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(values) != len(directions):
        what = "a single value" if len(directions) == 1 else f"{len(directions)} values {tuple(directions)}"
        raise TellValueError(f"controller {controller!r} takes {what} (got {value!r})")
    for item in values:
        if not is_number(item):
            raise TellValueError(f"controller {controller!r}: told values must be finite numbers (got {value!r}); "
                                 "tell Failed(reason) for a failed evaluation")
    return tuple(float(item) for item in values)


def check_state(controller: str, state: Any, expected_format: str, config: Mapping[str, Any]) -> None:
    """A state must be a mapping of the right format, saved with the same space and options."""
    if not isinstance(state, Mapping) or state.get("format") != expected_format:
        found = state.get("format") if isinstance(state, Mapping) else type(state).__name__
        raise ControllerError(f"controller {controller!r}: not a {expected_format} state (found {found!r})")
    for key, value in config.items():
        if state.get(key) != value:
            raise ControllerError(f"controller {controller!r}: the state was saved with {key}={state.get(key)!r}, "
                                  f"this controller has {key}={value!r}")


__all__ = [
    "Controller", "StudyController", "Trial", "Failed", "Value", "ControllerError", "UnknownControllerError",
    "UnknownTrialError",
    "ControllerOptionError", "TellValueError",
]
