"""The MindSpore layer: a spec becomes a network (:mod:`nas.models.builder`), its weights are
saved and loaded strictly (:mod:`nas.models.checkpoint`), and MindCV models and checkpoints are
imported into our names (:mod:`nas.models.mindcv`). Importing it imports MindSpore."""
