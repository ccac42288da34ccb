"""Platform-aware neural architecture search on MindSpore: specs, builder, search and NetAdapt.

The package is layered; each layer imports only the layers below it (``docs/ARCHITECTURE.md``):
:mod:`nas.spec` (pure Python) at the bottom, then :mod:`nas.models`, :mod:`nas.runtime`,
:mod:`nas.training`, :mod:`nas.campaign` and :mod:`nas.cli` at the top.
"""
from nas.spec import ArchSpec, BlockSpec, HeadSpec, SESpec, SpecError, StemSpec

__version__ = "0.1.0"
__all__ = ["ArchSpec", "BlockSpec", "HeadSpec", "SESpec", "SpecError", "StemSpec", "__version__"]
