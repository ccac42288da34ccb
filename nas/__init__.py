"""Platform-aware neural architecture search on MindSpore: specs, builder, search and NetAdapt.

``nas.spec`` and ``nas.profile`` are pure Python; modules that build or train networks import
MindSpore when they are used.
"""
from nas.spec import ArchSpec, BlockSpec, HeadSpec, SESpec, SpecError, StemSpec

__version__ = "0.1.0"
__all__ = ["ArchSpec", "BlockSpec", "HeadSpec", "SESpec", "SpecError", "StemSpec", "__version__"]
