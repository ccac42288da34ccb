"""The runtime layer: exclusive device access across processes (:mod:`nas.runtime.devicelock`),
one way to start or join Ray (:mod:`nas.runtime.cluster`), and the one bounded Ray job pool
(:mod:`nas.runtime.pool`). Importing it imports neither MindSpore nor Ray."""
