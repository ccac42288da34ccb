"""The training layer: datasets through ``mindspore.dataset`` (:mod:`nas.training.data`), the
engine (:mod:`nas.training.engine`), the proxy task and short fine-tunes
(:mod:`nas.training.proxy`), full training with recipes (:mod:`nas.training.full`,
:mod:`nas.training.recipe`), and validation and deployment export (:mod:`nas.training.deploy`).
:mod:`nas.training.config` (the hyperparameters and the data settings) is pure Python."""
