"""Named NetAdapt errors. All are :class:`nas.spec.errors.NasError`, so the CLI prints them as one
line with exit code 2."""
from __future__ import annotations

from nas.spec.errors import NasError


class NetAdaptError(NasError):
    """Base of every NetAdapt error."""


class NothingToDoError(NetAdaptError):
    """The network already meets the latency budget: there is nothing to prune."""


class BudgetUnreachableError(NetAdaptError):
    """No proposal can shrink the network any further, yet the budget is not met."""


class SurgeryError(NetAdaptError, ValueError):
    """Two specs cannot be related by weight surgery (different structure, or a width grew)."""


class ResumeError(NetAdaptError):
    """An output directory cannot be resumed (a different run, or no run at all)."""


class NoisyLatencyError(NetAdaptError):
    """The seed's latency is known less precisely than one iteration's scheduled reduction."""
