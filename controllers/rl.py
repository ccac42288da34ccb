"""MnasNet's controller: an LSTM policy, trained with PPO on the reward (NumPy).

The policy emits one token per decision, in the space's decision order. Step ``t`` feeds the
LSTM an embedding of the previous token (a learned start token at ``t = 0``; every
(decision, choice) pair has its own embedding row), and a softmax head sized to decision
``t``'s choice count turns the hidden state into that decision's probabilities. The heads are
the column blocks of one output matrix, so masking the other blocks out gives each decision its
own softmax.

Proposals are drawn a batch at a time (``batch_size`` = M architectures) from the current
policy, and each decision is drawn with the controller's own NumPy generator from the
probabilities it gives, so a seed fixes every proposal. Once M results are told, PPO updates the
policy: ``epochs`` Adam steps on the clipped surrogate objective over the whole batch (each
decision is an action; all decisions of an architecture share its advantage), plus an entropy
bonus. The advantage is the reward minus an exponential moving average baseline, divided by the
batch's reward spread (``normalize_advantages``). Failed evaluations are left out of the batch
unless ``failure_reward`` gives them a reward.

The policy, the loss and its gradient (backpropagation through time, written out in
:func:`ppo_loss_and_gradients` and checked against MindSpore's autodiff in the tests) and the
Adam step are NumPy. The network is tiny (hidden 64, one step per decision): through
MindSpore's compiled graphs, an update of 20 architectures (4 epochs) took 351-430 ms here, mostly
kernel launches and the graph call's dispatch; in NumPy it takes about 60 ms, and the controller
no longer imports MindSpore.

The policy's matrix products run on one BLAS thread (:func:`one_blas_thread`). They are small (a
batch of 20 by 64 by 256), and a second OpenBLAS thread only helps on an idle core: in a campaign
the other cores train or start Ray workers, and OpenBLAS's threads then wait on each other. An
update of 20 took 0.21-0.23 s with NumPy's default two threads beside one busy core, and 0.058 s on
one thread, the same as on an idle host. One thread also keeps the proposals independent of the
host's core count.

Proposals drawn but not yet asked when an update happens are dropped, so every ask after an
update comes from the updated policy. ``state_dict`` holds the weights, Adam's moments, the
baseline, the drawn/asked/told-but-unused proposals, the generator state and ``history`` (one
row per update, as a table).
"""
from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, Iterator, Mapping

import numpy as np
from threadpoolctl import ThreadpoolController

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
HISTORY_FIELDS = ("update", "mean_reward", "max_reward", "baseline", "loss_first_epoch", "loss_last_epoch",
                  "entropy")  # one entry of ``history`` per PPO update
Array = np.ndarray[Any, Any]


@functools.lru_cache(maxsize=1)
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()  # finds the BLAS libraries loaded (NumPy's); made once, as it scans


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Inside the block, NumPy's BLAS runs on one thread (see the module's docstring)."""
    with _threadpools().limit(limits=1, user_api="blas"):
        yield


def _sigmoid(x: Array) -> Array:
    result: Array = 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free logistic
    return result


def _lstm_cell(projected: Array, h: Array, c: Array,
               w_hidden: Array) -> tuple[Array, ...]:
    """One LSTM step (``projected`` is x @ w_input + bias): the new h and c, and what the backward
    pass needs (the input, forget and output gates, the candidate, tanh of the new c)."""
    hidden = w_hidden.shape[0]
    gates = projected + h @ w_hidden
    gate_in = _sigmoid(gates[:, :hidden])
    gate_forget = _sigmoid(gates[:, hidden:2 * hidden])
    candidate = np.tanh(gates[:, 2 * hidden:3 * hidden])
    gate_out = _sigmoid(gates[:, 3 * hidden:])
    c_new = gate_forget * c + gate_in * candidate
    tanh_c = np.tanh(c_new)
    return gate_out * tanh_c, c_new, gate_in, gate_forget, candidate, gate_out, tanh_c


def policy_step(tokens: Array, h: Array, c: Array,
                weights: tuple[Array, ...]) -> tuple[Array, Array, Array]:
    """One decision step of the policy for a batch: the new h and c, and the logits over every
    decision's choices (the caller keeps the current decision's block)."""
    embedding, w_input, w_hidden, bias, w_output, b_output = weights
    h, c, *_ = _lstm_cell(embedding[tokens] @ w_input + bias, h, c, w_hidden)
    return h, c, h @ w_output + b_output


def ppo_loss_and_gradients(weights: tuple[Array, ...], previous: Array, taken: Array,
                           mask: Array, old_log_probs: Array, advantages: Array, clip: float,
                           entropy_weight: float) -> tuple[float, float, list[Array]]:
    """The clipped PPO objective over a batch, with an entropy bonus, and its gradient with
    respect to each weight (in ``_PARAMETER_NAMES`` order), by backpropagation through time.

    ``previous`` (steps x batch) holds each step's input token (teacher forcing: every step's
    input is known, so the input projections and output heads are one matmul each over all
    steps), ``taken`` (steps x batch x choices) one-hot the chosen action, ``mask`` (steps x 1 x
    choices) 0 on the step's own choices and ``MASKED`` elsewhere, ``advantages`` (1 x batch)
    one per architecture. Loss: ``-mean(min(r A, clip(r, 1 - eps, 1 + eps) A)) - entropy_weight
    * mean entropy``, r the probability ratio of each decision against ``old_log_probs``."""
    embedding, w_input, w_hidden, bias, w_output, b_output = weights
    steps, batch = previous.shape
    hidden = w_hidden.shape[0]
    inputs = embedding[previous]                                   # steps x batch x E
    projected = inputs @ w_input + bias                            # steps x batch x 4H
    h = np.zeros((batch, hidden), np.float32)
    c = np.zeros((batch, hidden), np.float32)
    hs, cs, caches = [], [c], []
    for step in range(steps):
        h, c, *cache = _lstm_cell(projected[step], h, c, w_hidden)
        hs.append(h)
        cs.append(c)
        caches.append(cache)
    hiddens = np.stack(hs)                                         # steps x batch x H
    logits = hiddens @ w_output + b_output + mask
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    probs = np.exp(log_probs)
    plogp = probs * log_probs
    chosen = (log_probs * taken).sum(-1)                           # steps x batch
    count = steps * batch
    entropy = float(-plogp.sum(-1).mean())
    ratio = np.exp(chosen - old_log_probs)
    clipped = np.clip(ratio, 1.0 - clip, 1.0 + clip)
    unclipped_wins = ratio * advantages <= clipped * advantages
    surrogate = np.where(unclipped_wins, ratio * advantages, clipped * advantages)
    loss = float(-surrogate.mean() - entropy_weight * entropy)

    # d loss / d ratio: the term min() picked; the clipped one passes gradient only inside the band
    inside = (ratio > 1.0 - clip) & (ratio < 1.0 + clip)
    d_ratio = np.where(unclipped_wins, advantages, advantages * inside) * (-1.0 / count)
    d_log_probs = taken * (d_ratio * ratio)[..., None]
    d_log_probs += (entropy_weight / count) * (plogp + probs)      # d(-w * entropy) / d log p
    d_logits = (d_log_probs - probs * d_log_probs.sum(-1, keepdims=True)).astype(np.float32)
    grad_w_output = np.einsum("sbh,sbk->hk", hiddens, d_logits)
    grad_b_output = d_logits.sum((0, 1))
    d_hiddens = d_logits @ w_output.T                              # steps x batch x H
    d_gates = np.empty_like(projected)
    d_h = np.zeros((batch, hidden), np.float32)
    d_c = np.zeros((batch, hidden), np.float32)
    for step in range(steps - 1, -1, -1):                          # bounded: the steps, backwards
        gate_in, gate_forget, candidate, gate_out, tanh_c = caches[step]
        d_h = d_h + d_hiddens[step]
        d_out = d_h * tanh_c
        d_c = d_c + d_h * gate_out * (1.0 - tanh_c * tanh_c)
        d_gates[step, :, :hidden] = d_c * candidate * gate_in * (1.0 - gate_in)
        d_gates[step, :, hidden:2 * hidden] = d_c * cs[step] * gate_forget * (1.0 - gate_forget)
        d_gates[step, :, 2 * hidden:3 * hidden] = d_c * gate_in * (1.0 - candidate * candidate)
        d_gates[step, :, 3 * hidden:] = d_out * gate_out * (1.0 - gate_out)
        d_c = d_c * gate_forget
        d_h = d_gates[step] @ w_hidden.T
    previous_hiddens = np.concatenate([np.zeros((1, batch, hidden), np.float32), hiddens[:-1]])
    grad_w_hidden = np.einsum("sbh,sbg->hg", previous_hiddens, d_gates)
    grad_w_input = np.einsum("sbe,sbg->eg", inputs, d_gates)
    grad_bias = d_gates.sum((0, 1))
    grad_embedding = np.zeros_like(embedding)
    np.add.at(grad_embedding, previous, d_gates @ w_input.T)
    return loss, entropy, [grad_embedding, grad_w_input, grad_w_hidden, grad_bias, grad_w_output, grad_b_output]


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
        self._mask = mask
        self._rng = np.random.default_rng(seed)
        shapes = {"embedding": (total + 1, embedding_size), "w_input": (embedding_size, 4 * hidden_size),
                  "w_hidden": (hidden_size, 4 * hidden_size), "bias": (4 * hidden_size,),
                  "w_output": (hidden_size, total), "b_output": (total,)}
        self._shapes = shapes
        self._weights = tuple(self._rng.uniform(-init_scale, init_scale, shapes[name]).astype(np.float32)
                              for name in _PARAMETER_NAMES)
        self._moment1 = tuple(np.zeros(shapes[name], np.float32) for name in _PARAMETER_NAMES)
        self._moment2 = tuple(np.zeros(shapes[name], np.float32) for name in _PARAMETER_NAMES)
        self._adam_step = 0
        self._baseline: float | None = None
        self._drawn: list[tuple[list[int], list[float]]] = []
        self._asked: dict[int, tuple[list[int], list[float]]] = {}
        self._told: list[tuple[list[int], list[float], float]] = []
        self._next_number = 0
        self.history: list[dict[str, float]] = []
        self._history_cache: tuple[int, Array] = (0, np.zeros((0, len(HISTORY_FIELDS))))

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
        batch = self.options["batch_size"]
        hidden = self.options["hidden_size"]
        h = np.zeros((batch, hidden), np.float32)
        c = np.zeros((batch, hidden), np.float32)
        tokens = np.zeros(batch, np.int64)
        choices = np.zeros((len(self._counts), batch), np.int64)
        log_probs = np.zeros((len(self._counts), batch))
        rows = np.arange(batch)
        for step, (offset, count) in enumerate(zip(self._offsets, self._counts)):
            h, c, logits = policy_step(tokens, h, c, self._weights)
            scores = logits[:, offset:offset + count].astype(np.float64)
            scores -= scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=1, keepdims=True)
            draws = self._rng.random(batch)
            picked = np.minimum((np.cumsum(probs, axis=1) < draws[:, None]).sum(axis=1), count - 1)
            choices[step] = picked
            log_probs[step] = np.log(probs[rows, picked])
            tokens = offset + picked + 1
        self._drawn = [(choices[:, column].tolist(), log_probs[:, column].tolist()) for column in range(batch)]

    def probabilities(self, decisions: Mapping[str, Any] | None = None) -> list[np.ndarray[Any, Any]]:
        """The policy's probabilities for every decision, along ``decisions`` (default: the
        policy's most likely path). For inspection and tests; draws nothing."""
        hidden = self.options["hidden_size"]
        h = np.zeros((1, hidden), np.float32)
        c = np.zeros((1, hidden), np.float32)
        fixed = self.space.indices(decisions) if decisions is not None else None
        tokens = np.zeros(1, np.int64)
        result = []
        for step, (offset, count) in enumerate(zip(self._offsets, self._counts)):
            h, c, logits = policy_step(tokens, h, c, self._weights)
            scores = logits[0, offset:offset + count].astype(np.float64)
            probs = np.exp(scores - scores.max())
            probs /= probs.sum()
            result.append(probs)
            picked = fixed[step] if fixed is not None else int(probs.argmax())
            tokens = np.full(1, offset + picked + 1, np.int64)
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
        previous = np.zeros((steps, size), np.int64)
        previous[1:] = flat[:-1] + 1
        taken = np.zeros((steps, size, int(self._counts.sum())), np.float32)
        taken[np.arange(steps)[:, None], np.arange(size)[None, :], flat] = 1.0
        old = old_log_probs.astype(np.float32)
        scaled = advantages.astype(np.float32)[None, :]
        beta1, beta2 = ADAM_BETAS
        losses, entropies = [], []
        for _ in range(options["epochs"]):  # one Adam step per epoch on the whole batch
            loss, entropy, grads = ppo_loss_and_gradients(self._weights, previous, taken, self._mask, old, scaled,
                                                          options["clip"], options["entropy_weight"])
            self._adam_step += 1
            step_size = options["learning_rate"] * math.sqrt(1.0 - beta2 ** self._adam_step) / \
                (1.0 - beta1 ** self._adam_step)
            moment1 = tuple(beta1 * m + (1.0 - beta1) * g for m, g in zip(self._moment1, grads))
            moment2 = tuple(beta2 * v + (1.0 - beta2) * g * g for v, g in zip(self._moment2, grads))
            self._weights = tuple((w - step_size * m / (np.sqrt(v) + ADAM_EPSILON)).astype(np.float32)
                                  for w, m, v in zip(self._weights, moment1, moment2))
            self._moment1 = tuple(m.astype(np.float32) for m in moment1)
            self._moment2 = tuple(v.astype(np.float32) for v in moment2)
            losses.append(loss)
            entropies.append(entropy)
        self.history.append({"update": len(self.history), "mean_reward": float(rewards.mean()),
                             "max_reward": float(rewards.max()), "baseline": self._baseline,
                             "loss_first_epoch": losses[0], "loss_last_epoch": losses[-1],
                             "entropy": entropies[-1]})

    # ----- ask / tell -----------------------------------------------------------------------------

    def ask(self) -> Trial:
        if not self._drawn:
            with one_blas_thread():
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
            with one_blas_thread():
                self._update(batch)
            self._drawn = []  # drawn from the old policy: draw afresh from the updated one

    # ----- state ------------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {"space": self.space.config(), "seed": self.seed, "options": dict(self.options)}

    def state_dict(self) -> dict[str, Any]:
        def arrays(tensors: Any) -> dict[str, Any]:
            return {name: array.copy() for name, array in zip(_PARAMETER_NAMES, tensors)}

        return {
            "format": FORMAT, **self._config(),
            "policy": arrays(self._weights),
            "optimizer": {"step": float(self._adam_step), "moment1": arrays(self._moment1),
                          "moment2": arrays(self._moment2)},
            "baseline": self._baseline,
            "rng": self._rng.bit_generator.state,
            "drawn": [(list(c), list(p)) for c, p in self._drawn],
            "asked": {number: (list(c), list(p)) for number, (c, p) in self._asked.items()},
            "told": [(list(c), list(p), r) for c, p, r in self._told],
            "next_number": self._next_number,
            "history": self._history_table(),
        }

    def _history_table(self) -> dict[str, Any]:
        """``history`` as one array (an update per row, :data:`HISTORY_FIELDS` as columns): saved
        after every tell, a list of entries grew to 100 KB of JSON by 8,000 trials (3-4 ms a
        save), where the array is written once per update as a blob (``controllers.statefile``)."""
        if self._history_cache[0] != len(self.history):
            rows = np.array([[float(entry[field]) for field in HISTORY_FIELDS] for entry in self.history],
                            np.float64).reshape(len(self.history), len(HISTORY_FIELDS))
            self._history_cache = (len(self.history), rows)
        return {"fields": list(HISTORY_FIELDS), "rows": self._history_cache[1].copy()}

    def _tensors(self, saved: Mapping[str, Any], what: str) -> tuple[Any, ...]:
        tensors = []
        for name in _PARAMETER_NAMES:
            array = saved.get(name) if isinstance(saved, Mapping) else None
            if array is None or tuple(np.shape(array)) != tuple(self._shapes[name]):
                raise ControllerError(f"controller 'rl': the state has no {what} {name!r} "
                                      f"of shape {self._shapes[name]}")
            tensors.append(np.array(array, np.float32))
        return tuple(tensors)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state(self.name, state, FORMAT, self._config())
        self._weights = self._tensors(state["policy"], "weight")
        self._moment1 = self._tensors(state["optimizer"]["moment1"], "Adam first moment")
        self._moment2 = self._tensors(state["optimizer"]["moment2"], "Adam second moment")
        self._adam_step = int(state["optimizer"]["step"])
        self._baseline = state["baseline"]
        self._rng.bit_generator.state = state["rng"]
        self._drawn = [(list(c), list(p)) for c, p in state["drawn"]]
        self._asked = {int(number): (list(c), list(p)) for number, (c, p) in state["asked"].items()}
        self._told = [(list(c), list(p), float(r)) for c, p, r in state["told"]]
        self._next_number = int(state["next_number"])
        self.history = _history_entries(state["history"])
        self._history_cache = (-1, self._history_cache[1])  # built afresh at the next save


def _history_entries(saved: Any) -> list[dict[str, float]]:
    """``history`` from a state: the table :meth:`RLController._history_table` saves, or the list of
    entries earlier versions saved."""
    if isinstance(saved, list):
        return [dict(entry) for entry in saved]
    rows = np.asarray(saved.get("rows", ())) if isinstance(saved, Mapping) else np.zeros(0)
    if (not isinstance(saved, Mapping) or saved.get("fields") != list(HISTORY_FIELDS) or rows.ndim != 2
            or rows.shape[1] != len(HISTORY_FIELDS)):
        raise ControllerError(f"controller 'rl': the state's history is not a table of {list(HISTORY_FIELDS)}")
    return [{field: (int(value) if field == "update" else float(value)) for field, value in zip(HISTORY_FIELDS, row)}
            for row in rows.tolist()]


__all__ = ["RLController"]
