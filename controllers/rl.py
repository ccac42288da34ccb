"""MnasNet's controller: an LSTM policy in MindSpore, trained with PPO on the reward.

The policy emits one token per decision, in the space's decision order. Step ``t`` feeds the
LSTM an embedding of the previous token (a learned start token at ``t = 0``; every
(decision, choice) pair has its own embedding row), and a softmax head sized to decision
``t``'s choice count turns the hidden state into that decision's probabilities. The heads are
the column blocks of one output matrix, so masking the other blocks out gives each decision its
own softmax.

Proposals are drawn a batch at a time (``batch_size`` = M architectures) from the current
policy: the LSTM runs in MindSpore (a compiled step function), and each decision is drawn with
the controller's own NumPy generator from the probabilities it returns, so a seed fixes every
proposal. Once M results are told, PPO updates the policy: ``epochs`` Adam steps on the
clipped surrogate objective over the whole batch (each decision is an action; all decisions of
an architecture share its advantage), plus an entropy bonus. The advantage is the reward minus
an exponential moving average baseline, divided by the batch's reward spread
(``normalize_advantages``). Failed evaluations are left out of the batch unless
``failure_reward`` gives them a reward.

The loss, its gradient (MindSpore autodiff) and the Adam step are one function compiled with
``mindspore.jit``; the weights and Adam's moments are its inputs and outputs rather than
``Parameter`` objects, so every controller of the same shape in a process reuses one compiled
graph (a compile takes seconds; a PPO epoch on a batch of 20 takes tens of milliseconds).

Proposals drawn but not yet asked when an update happens are dropped, so every ask after an
update comes from the updated policy. ``state_dict`` holds the weights, Adam's moments, the
baseline, the drawn/asked/told-but-unused proposals and the generator state.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from controllers.base import (
    AskedTrials,
    ControllerError,
    ControllerOptionError,
    Failed,
    Trial,
    Value,
    check_state,
)
from nas.spec.checks import is_int, is_number
from search_spaces import SearchSpace

FORMAT = "nas.controllers.rl/1"
MASKED = -1e9
_PARAMETER_NAMES = ("embedding", "w_input", "w_hidden", "bias", "w_output", "b_output")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8
_COMPILED: dict[str, Any] = {}


def _functions() -> dict[str, Any]:
    """The MindSpore functions, compiled once per process and shared by every controller
    (weights are arguments, so controllers of the same shape reuse one graph)."""
    if _COMPILED:
        return _COMPILED
    # heavy: MindSpore takes seconds to import; only the RL controller needs it, so the others stay light
    import mindspore as ms
    from mindspore import ops

    def lstm_cell(projected_input: Any, h: Any, c: Any, w_hidden: Any) -> tuple[Any, Any]:
        """One LSTM step; ``projected_input`` is x @ w_input + bias."""
        gates = projected_input + ops.matmul(h, w_hidden)
        hidden = w_hidden.shape[0]
        gated = ops.sigmoid(gates)
        c = gated[:, hidden:2 * hidden] * c + gated[:, :hidden] * ops.tanh(gates[:, 2 * hidden:3 * hidden])
        h = gated[:, 3 * hidden:] * ops.tanh(c)
        return h, c

    def policy_step(tokens: Any, h: Any, c: Any, embedding: Any, w_input: Any, w_hidden: Any, bias: Any,
                    w_output: Any, b_output: Any) -> tuple[Any, Any, Any]:
        projected = ops.matmul(ops.gather(embedding, tokens, 0), w_input) + bias
        h, c = lstm_cell(projected, h, c, w_hidden)
        return h, c, ops.matmul(h, w_output) + b_output

    def ppo_loss(embedding: Any, w_input: Any, w_hidden: Any, bias: Any, w_output: Any, b_output: Any,
                 previous: Any, taken: Any, mask: Any, old_log_probs: Any, advantages: Any, clip: Any,
                 entropy_weight: Any) -> tuple[Any, ...]:
        # teacher forcing: every step's input (the previous token) is known, so the input
        # projections and the output heads are one matmul each over all steps
        steps, batch = previous.shape
        projected = ops.matmul(ops.gather(embedding, previous, 0), w_input) + bias   # steps x batch x 4H
        h = ops.zeros((batch, w_hidden.shape[0]), ms.float32)
        c = ops.zeros((batch, w_hidden.shape[0]), ms.float32)
        hiddens = []
        for step in range(steps):
            h, c = lstm_cell(projected[step], h, c, w_hidden)
            hiddens.append(h)
        logits = ops.matmul(ops.stack(hiddens), w_output) + b_output                # steps x batch x choices
        log_probs = ops.log_softmax(logits + mask, -1)
        chosen = (log_probs * taken).sum(-1)                                 # steps x batch
        entropy = -(ops.exp(log_probs) * log_probs).sum(-1).mean()
        ratio = ops.exp(chosen - old_log_probs)
        surrogate = ops.minimum(ratio * advantages, ops.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages)
        loss = -surrogate.mean() - entropy_weight * entropy
        return loss, entropy

    gradients = ms.value_and_grad(ppo_loss, grad_position=(0, 1, 2, 3, 4, 5), has_aux=True)

    def ppo_epoch(embedding: Any, w_input: Any, w_hidden: Any, bias: Any, w_output: Any, b_output: Any,
                  m_embedding: Any, m_input: Any, m_hidden: Any, m_bias: Any, m_output: Any, m_b_output: Any,
                  v_embedding: Any, v_input: Any, v_hidden: Any, v_bias: Any, v_output: Any, v_b_output: Any,
                  step: Any, previous: Any, taken: Any, mask: Any, old_log_probs: Any, advantages: Any, clip: Any,
                  entropy_weight: Any, learning_rate: Any, beta1: Any, beta2: Any,
                  epsilon: Any) -> tuple[Any, ...]:
        """One Adam step on the PPO loss: the loss, the entropy, then the new weights, first
        moments, second moments and step count (the order of the arguments)."""
        weights = (embedding, w_input, w_hidden, bias, w_output, b_output)
        moment1 = (m_embedding, m_input, m_hidden, m_bias, m_output, m_b_output)
        moment2 = (v_embedding, v_input, v_hidden, v_bias, v_output, v_b_output)
        (loss, entropy), grads = gradients(embedding, w_input, w_hidden, bias, w_output, b_output, previous, taken,
                                           mask, old_log_probs, advantages, clip, entropy_weight)
        step = step + 1.0
        scale = learning_rate * ops.sqrt(1.0 - ops.pow(beta2, step)) / (1.0 - ops.pow(beta1, step))
        new_weights, new_moment1, new_moment2 = [], [], []
        for index in range(6):
            first = beta1 * moment1[index] + (1.0 - beta1) * grads[index]
            second = beta2 * moment2[index] + (1.0 - beta2) * grads[index] * grads[index]
            new_weights.append(weights[index] - scale * first / (ops.sqrt(second) + epsilon))
            new_moment1.append(first)
            new_moment2.append(second)
        return (loss, entropy) + tuple(new_weights) + tuple(new_moment1) + tuple(new_moment2) + (step,)

    _COMPILED["step"] = ms.jit(policy_step)
    _COMPILED["epoch"] = ms.jit(ppo_epoch)
    return _COMPILED


class RLController(AskedTrials):
    """MnasNet's RL controller (single objective: the reward, maximised).

    The defaults (M = 20, 4 epochs, Adam 0.02, entropy 0.05, hidden 64) were tuned on the
    surrogate objective of ``bench/controllers.py``; a real campaign with noisy proxy accuracy
    may want a smaller learning rate.
    """

    name = "rl"
    directions: tuple[str, ...] = ("maximize",)

    def __init__(self, space: SearchSpace, seed: int = 0, *, batch_size: int = 20, epochs: int = 4,
                 learning_rate: float = 0.02, clip: float = 0.2, entropy_weight: float = 0.05,
                 baseline_decay: float = 0.9, hidden_size: int = 64, embedding_size: int = 32,
                 init_scale: float = 0.1, normalize_advantages: bool = True,
                 failure_reward: float | None = None) -> None:
        self._check_options(batch_size=batch_size, epochs=epochs, learning_rate=learning_rate, clip=clip,
                            entropy_weight=entropy_weight, baseline_decay=baseline_decay, hidden_size=hidden_size,
                            embedding_size=embedding_size, init_scale=init_scale, failure_reward=failure_reward)
        import mindspore as ms  # heavy: see _functions
        from mindspore import Tensor

        self.space = space
        self.seed = seed
        self.options: dict[str, Any] = {
                        "batch_size": batch_size, "epochs": epochs, "learning_rate": learning_rate, "clip": clip,
                        "entropy_weight": entropy_weight, "baseline_decay": baseline_decay,
                        "hidden_size": hidden_size, "embedding_size": embedding_size, "init_scale": init_scale,
                        "normalize_advantages": bool(normalize_advantages), "failure_reward": failure_reward}
        self._counts = np.array([len(decision.choices) for decision in space.decisions])
        self._offsets = np.concatenate([[0], np.cumsum(self._counts)[:-1]]).astype(np.int64)
        total = int(self._counts.sum())
        steps = len(self._counts)
        mask = np.full((steps, 1, total), MASKED, np.float32)
        for step, (offset, count) in enumerate(zip(self._offsets, self._counts)):
            mask[step, 0, offset:offset + count] = 0.0
        self._mask = Tensor(mask)
        self._rng = np.random.default_rng(seed)
        shapes = {"embedding": (total + 1, embedding_size), "w_input": (embedding_size, 4 * hidden_size),
                  "w_hidden": (hidden_size, 4 * hidden_size), "bias": (4 * hidden_size,),
                  "w_output": (hidden_size, total), "b_output": (total,)}
        self._shapes = shapes
        self._weights = tuple(Tensor(self._rng.uniform(-init_scale, init_scale, shapes[name]).astype(np.float32))
                              for name in _PARAMETER_NAMES)
        self._moment1 = tuple(Tensor(np.zeros(shapes[name], np.float32)) for name in _PARAMETER_NAMES)
        self._moment2 = tuple(Tensor(np.zeros(shapes[name], np.float32)) for name in _PARAMETER_NAMES)
        self._adam_step = Tensor(np.float32(0.0))
        self._ms = ms
        self._tensor = Tensor
        self._functions = _functions()
        self._baseline: float | None = None
        self._drawn: list[tuple[list[int], list[float]]] = []
        self._asked: dict[int, tuple[list[int], list[float]]] = {}
        self._told: list[tuple[list[int], list[float], float]] = []
        self._next_number = 0
        self.history: list[dict[str, float]] = []

    @classmethod
    def _check_options(cls, **options: Any) -> None:
        rules = {"batch_size": (int, 1, 100000), "epochs": (int, 1, 1000), "hidden_size": (int, 1, 4096),
                 "embedding_size": (int, 1, 4096), "learning_rate": (float, 0, 10), "clip": (float, 0, 10),
                 "entropy_weight": (float, 0, 100), "baseline_decay": (float, 0, 1), "init_scale": (float, 0, 10)}
        for option, (kind, low, high) in rules.items():
            value = options[option]
            valid_type = is_int(value) if kind is int else is_number(value)
            if not valid_type or not (low <= value <= high) or (option in ("learning_rate", "clip") and value <= 0):
                raise ControllerOptionError(cls.name, option, value, f"must be a {kind.__name__} in [{low}, {high}]"
                                            + (" and positive" if option in ("learning_rate", "clip") else ""))
        failure = options["failure_reward"]
        if failure is not None and not is_number(failure):
            raise ControllerOptionError(cls.name, "failure_reward", failure, "must be a finite number or None")

    # ----- the policy -----------------------------------------------------------------------------

    def _draw_batch(self) -> None:
        """Draw ``batch_size`` proposals from the current policy into the queue."""
        ms = self._ms
        batch = self.options["batch_size"]
        hidden = self.options["hidden_size"]
        weights = self._weights
        h = ms.ops.zeros((batch, hidden), ms.float32)
        c = ms.ops.zeros((batch, hidden), ms.float32)
        tokens = np.zeros(batch, np.int32)
        choices = np.zeros((len(self._counts), batch), np.int64)
        log_probs = np.zeros((len(self._counts), batch))
        rows = np.arange(batch)
        for step, (offset, count) in enumerate(zip(self._offsets, self._counts)):
            h, c, logits = self._functions["step"](self._tensor(tokens), h, c, *weights)
            scores = logits.asnumpy()[:, offset:offset + count].astype(np.float64)
            scores -= scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=1, keepdims=True)
            draws = self._rng.random(batch)
            picked = np.minimum((np.cumsum(probs, axis=1) < draws[:, None]).sum(axis=1), count - 1)
            choices[step] = picked
            log_probs[step] = np.log(probs[rows, picked])
            tokens = (offset + picked + 1).astype(np.int32)
        self._drawn = [(choices[:, column].tolist(), log_probs[:, column].tolist()) for column in range(batch)]

    def probabilities(self, decisions: Mapping[str, Any] | None = None) -> list[np.ndarray[Any, Any]]:
        """The policy's probabilities for every decision, along ``decisions`` (default: the
        policy's most likely path). For inspection and tests; draws nothing."""
        ms = self._ms
        batch = self.options["batch_size"]  # the shape the step function is compiled for
        hidden = self.options["hidden_size"]
        h = ms.ops.zeros((batch, hidden), ms.float32)
        c = ms.ops.zeros((batch, hidden), ms.float32)
        fixed = self.space.indices(decisions) if decisions is not None else None
        tokens = np.zeros(batch, np.int32)
        result = []
        for step, (offset, count) in enumerate(zip(self._offsets, self._counts)):
            h, c, logits = self._functions["step"](self._tensor(tokens), h, c, *self._weights)
            scores = logits.asnumpy()[0, offset:offset + count].astype(np.float64)
            probs = np.exp(scores - scores.max())
            probs /= probs.sum()
            result.append(probs)
            picked = fixed[step] if fixed is not None else int(probs.argmax())
            tokens = np.full(batch, offset + picked + 1, np.int32)
        return result

    def _update(self, batch: list[tuple[list[int], list[float], float]]) -> None:
        """One PPO update on a batch of told proposals."""
        options = self.options
        rewards = np.array([reward for _, _, reward in batch])
        if self._baseline is None:
            self._baseline = float(rewards.mean())
        advantages = rewards - self._baseline
        spread = float(rewards.std())
        if options["normalize_advantages"] and spread > 1e-8 * max(1.0, float(np.abs(rewards).mean())):
            advantages = advantages / spread
        decay = options["baseline_decay"]
        for reward in rewards:
            self._baseline = decay * self._baseline + (1 - decay) * float(reward)
        choices = np.array([chosen for chosen, _, _ in batch]).T                 # steps x batch
        old_log_probs = np.array([logp for _, logp, _ in batch]).T
        steps, size = choices.shape
        flat = self._offsets[:, None] + choices
        previous = np.zeros((steps, size), np.int32)
        previous[1:] = flat[:-1] + 1
        taken = np.zeros((steps, size, int(self._counts.sum())), np.float32)
        taken[np.arange(steps)[:, None], np.arange(size)[None, :], flat] = 1.0
        Tensor = self._tensor
        arguments = (Tensor(previous), Tensor(taken), self._mask, Tensor(old_log_probs.astype(np.float32)),
                     Tensor(advantages.astype(np.float32)[None, :]), Tensor(np.float32(options["clip"])),
                     Tensor(np.float32(options["entropy_weight"])), Tensor(np.float32(options["learning_rate"])),
                     Tensor(np.float32(ADAM_BETAS[0])), Tensor(np.float32(ADAM_BETAS[1])),
                     Tensor(np.float32(ADAM_EPSILON)))
        losses, entropies = [], []
        for _ in range(options["epochs"]):
            outputs = self._functions["epoch"](*self._weights, *self._moment1, *self._moment2, self._adam_step,
                                               *arguments)
            loss, entropy = outputs[0], outputs[1]
            self._weights, self._moment1, self._moment2 = outputs[2:8], outputs[8:14], outputs[14:20]
            self._adam_step = outputs[20]
            losses.append(float(loss.asnumpy()))
            entropies.append(float(entropy.asnumpy()))
        self.history.append({"update": len(self.history), "mean_reward": float(rewards.mean()),
                             "max_reward": float(rewards.max()), "baseline": self._baseline,
                             "loss_first_epoch": losses[0], "loss_last_epoch": losses[-1],
                             "entropy": entropies[-1]})

    # ----- ask / tell -----------------------------------------------------------------------------

    def ask(self) -> Trial:
        if not self._drawn:
            self._draw_batch()
        choices, log_probs = self._drawn.pop(0)
        return self._record_ask(choices, (choices, log_probs))

    def tell(self, trial: Trial | int, value: Value) -> None:
        (choices, log_probs), checked = self._take_told(trial, value)
        if isinstance(checked, Failed):
            if self.options["failure_reward"] is None:
                return
            checked = (float(self.options["failure_reward"]),)
        self._told.append((choices, log_probs, checked[0]))
        batch_size = self.options["batch_size"]
        if len(self._told) >= batch_size:
            batch, self._told = self._told[:batch_size], self._told[batch_size:]
            self._update(batch)
            self._drawn = []  # drawn from the old policy: draw afresh from the updated one

    # ----- state ------------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {"space": self.space.config(), "seed": self.seed, "options": dict(self.options)}

    def state_dict(self) -> dict[str, Any]:
        def arrays(tensors: Any) -> dict[str, Any]:
            return {name: tensor.asnumpy().copy() for name, tensor in zip(_PARAMETER_NAMES, tensors)}

        return {
            "format": FORMAT, **self._config(),
            "policy": arrays(self._weights),
            "optimizer": {"step": float(self._adam_step.asnumpy()), "moment1": arrays(self._moment1),
                          "moment2": arrays(self._moment2)},
            "baseline": self._baseline,
            "rng": self._rng.bit_generator.state,
            "drawn": [(list(c), list(p)) for c, p in self._drawn],
            "asked": {number: (list(c), list(p)) for number, (c, p) in self._asked.items()},
            "told": [(list(c), list(p), r) for c, p, r in self._told],
            "next_number": self._next_number,
            "history": [dict(entry) for entry in self.history],
        }

    def _tensors(self, saved: Mapping[str, Any], what: str) -> tuple[Any, ...]:
        tensors = []
        for name in _PARAMETER_NAMES:
            array = saved.get(name) if isinstance(saved, Mapping) else None
            if array is None or tuple(np.shape(array)) != tuple(self._shapes[name]):
                raise ControllerError(f"controller 'rl': the state has no {what} {name!r} "
                                      f"of shape {self._shapes[name]}")
            tensors.append(self._tensor(np.asarray(array, np.float32)))
        return tuple(tensors)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(self.name, state, FORMAT, self._config())
        self._weights = self._tensors(state["policy"], "weight")
        self._moment1 = self._tensors(state["optimizer"]["moment1"], "Adam first moment")
        self._moment2 = self._tensors(state["optimizer"]["moment2"], "Adam second moment")
        self._adam_step = self._tensor(np.float32(state["optimizer"]["step"]))
        self._baseline = state["baseline"]
        self._rng.bit_generator.state = state["rng"]
        self._drawn = [(list(c), list(p)) for c, p in state["drawn"]]
        self._asked = {int(number): (list(c), list(p)) for number, (c, p) in state["asked"].items()}
        self._told = [(list(c), list(p), float(r)) for c, p, r in state["told"]]
        self._next_number = int(state["next_number"])
        self.history = [dict(entry) for entry in state["history"]]


__all__ = ["RLController"]
