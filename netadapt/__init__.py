"""NetAdapt: latency-driven, layer-wise filter pruning of a trained network (Yang et al. 2018, as
refined for MobileNetV3).

- :mod:`netadapt.channels`: residual groups, expansion and squeeze widths, group splits.
- :mod:`netadapt.proposals`: proposals as spec edits, valid widths, the largest width that meets
  a latency constraint.
- :mod:`netadapt.surgery`: weight surgery on MindSpore parameters (largest-L2-norm filters).

Importing this package does not import MindSpore or Ray.
"""
from __future__ import annotations

from netadapt.errors import BudgetUnreachableError, NetAdaptError, NothingToDoError, ResumeError, SurgeryError

__all__ = ["NetAdaptError", "NothingToDoError", "BudgetUnreachableError", "SurgeryError", "ResumeError"]
