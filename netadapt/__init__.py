"""NetAdapt: latency-driven, layer-wise filter pruning of a trained network (Yang et al. 2018, as
refined for MobileNetV3).

- :mod:`netadapt.channels`: residual groups, expansion and squeeze widths, group splits.
- :mod:`netadapt.proposals`: proposals as spec edits, valid widths, the largest width that meets
  a latency constraint.
- :mod:`netadapt.surgery`: weight surgery on numpy arrays (largest-L2-norm filters).
- :mod:`netadapt.grid`: the one pruning grid (the specs a look-up table needs).
- :mod:`netadapt.algorithm`: the schedule (decay or fixed) and the selection rules (slope, accuracy).
- :mod:`netadapt.estimates`: the latency protocols (predictor, meter), anchored estimates and the
  look-up-table build for the pruning grid.
- :mod:`netadapt.worker`: surgery on a MindSpore network, short-term fine-tune and held-out
  evaluation of a proposal, inline or on Ray.
- :mod:`netadapt.run`: the resumable loop (:func:`run_netadapt`) and its state, :mod:`netadapt.config`
  its settings, :mod:`netadapt.history` its CSV/Parquet history and its trajectory as plain data.

Importing this package imports neither MindSpore nor Ray; :mod:`netadapt.worker` and
:mod:`netadapt.run` do.
"""
from __future__ import annotations

from netadapt.errors import BudgetUnreachableError, NetAdaptError, NothingToDoError, ResumeError, SurgeryError

__all__ = ["NetAdaptError", "NothingToDoError", "BudgetUnreachableError", "SurgeryError", "ResumeError"]
