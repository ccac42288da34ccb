"""NetAdapt: latency-driven, layer-wise filter pruning of a trained network (Yang et al. 2018, as
refined for MobileNetV3).

- :mod:`netadapt.channels`: residual groups, expansion and squeeze widths, group splits.
- :mod:`netadapt.proposals`: proposals as spec edits, valid widths, the largest width that meets
  a latency constraint.
- :mod:`netadapt.surgery`: weight surgery on MindSpore parameters (largest-L2-norm filters).
- :mod:`netadapt.algorithm`: the schedule (decay or fixed) and the selection rules (slope, accuracy).
- :mod:`netadapt.resources`: the latency protocols (predictor, meter), anchored estimates and the
  look-up-table build for a pruning grid.
- :mod:`netadapt.worker`: short-term fine-tune and held-out evaluation of a proposal, inline or on Ray.
- :mod:`netadapt.run`: the resumable loop (:func:`run_netadapt`), :mod:`netadapt.config` its settings,
  :mod:`netadapt.history` its CSV/Parquet history, :mod:`netadapt.plotting` the trajectory plot.

Importing this package does not import MindSpore or Ray.
"""
from __future__ import annotations

from netadapt.errors import BudgetUnreachableError, NetAdaptError, NothingToDoError, ResumeError, SurgeryError

__all__ = ["NetAdaptError", "NothingToDoError", "BudgetUnreachableError", "SurgeryError", "ResumeError"]
