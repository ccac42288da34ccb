"""The RL controller's hand-written PPO loss and gradient against MindSpore's automatic
differentiation of the same objective, written here with MindSpore operations."""
from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import ops
from threadpoolctl import ThreadpoolController

from controllers.rl import MASKED, one_blas_thread, policy_step, ppo_loss_and_gradients

COUNTS = (3, 2, 4, 3)  # four decisions and their choice counts
HIDDEN, EMBED, BATCH = 8, 5, 6


def reference_loss(embedding, w_input, w_hidden, bias, w_output, b_output, previous, taken, mask, old_log_probs,
                   advantages, clip, entropy_weight):
    """The clipped PPO objective with an entropy bonus over an LSTM policy (gates: input, forget,
    candidate, output), in MindSpore operations."""
    steps, batch = previous.shape
    projected = ops.matmul(ops.gather(embedding, previous, 0), w_input) + bias
    h = ops.zeros((batch, HIDDEN), ms.float32)
    c = ops.zeros((batch, HIDDEN), ms.float32)
    hiddens = []
    for step in range(steps):
        gates = projected[step] + ops.matmul(h, w_hidden)
        c = ops.sigmoid(gates[:, HIDDEN:2 * HIDDEN]) * c + \
            ops.sigmoid(gates[:, :HIDDEN]) * ops.tanh(gates[:, 2 * HIDDEN:3 * HIDDEN])
        h = ops.sigmoid(gates[:, 3 * HIDDEN:]) * ops.tanh(c)
        hiddens.append(h)
    log_probs = ops.log_softmax(ops.matmul(ops.stack(hiddens), w_output) + b_output + mask, -1)
    chosen = (log_probs * taken).sum(-1)
    entropy = -(ops.exp(log_probs) * log_probs).sum(-1).mean()
    ratio = ops.exp(chosen - old_log_probs)
    surrogate = ops.minimum(ratio * advantages, ops.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages)
    return -surrogate.mean() - entropy_weight * entropy, entropy


def problem(seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    total = sum(COUNTS)
    shapes = [(total + 1, EMBED), (EMBED, 4 * HIDDEN), (HIDDEN, 4 * HIDDEN), (4 * HIDDEN,), (HIDDEN, total),
              (total,)]
    weights = tuple(rng.uniform(-0.6, 0.6, shape).astype(np.float32) for shape in shapes)
    offsets = np.concatenate([[0], np.cumsum(COUNTS)[:-1]])
    choices = np.stack([rng.integers(0, count, BATCH) for count in COUNTS])         # steps x batch
    flat = offsets[:, None] + choices
    previous = np.zeros_like(flat)
    previous[1:] = flat[:-1] + 1
    taken = np.zeros((len(COUNTS), BATCH, total), np.float32)
    taken[np.arange(len(COUNTS))[:, None], np.arange(BATCH)[None, :], flat] = 1.0
    mask = np.full((len(COUNTS), 1, total), MASKED, np.float32)
    for step, (offset, count) in enumerate(zip(offsets, COUNTS)):
        mask[step, 0, offset:offset + count] = 0.0
    # old log-probabilities away from the current ones, so some ratios fall outside the clip band
    old = (np.log(1.0 / np.array(COUNTS))[:, None] + rng.normal(0.0, 0.4, (len(COUNTS), BATCH))).astype(np.float32)
    advantages = rng.normal(0.0, 1.0, (1, BATCH)).astype(np.float32)
    return weights, previous, taken, mask, old, advantages


def softmax_policy(weights: tuple, previous: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The policy's probabilities at every step along ``previous`` (teacher forcing), by
    :func:`policy_step` step after step."""
    h = np.zeros((previous.shape[1], HIDDEN), np.float32)
    c = h.copy()
    found = []
    for step in range(previous.shape[0]):
        h, c, logits = policy_step(previous[step], h, c, weights)
        shifted = logits + mask[step] - (logits + mask[step]).max(-1, keepdims=True)
        found.append(np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True))
    return np.stack(found)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_gradient_equals_mindspore_autodiff_of_the_same_loss(seed: int) -> None:
    weights, previous, taken, mask, old, advantages = problem(seed)
    clip, entropy_weight = 0.2, 0.05
    loss, entropy, grads = ppo_loss_and_gradients(weights, previous, taken, mask, old, advantages, clip,
                                                  entropy_weight)
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        gradient = ms.value_and_grad(reference_loss, grad_position=(0, 1, 2, 3, 4, 5), has_aux=True)
        (expected_loss, expected_entropy), expected = gradient(
            *(ms.Tensor(w) for w in weights), ms.Tensor(previous.astype(np.int32)), ms.Tensor(taken),
            ms.Tensor(mask), ms.Tensor(old), ms.Tensor(advantages), clip, entropy_weight)
    finally:
        ms.set_context(mode=mode)
    assert loss == pytest.approx(float(expected_loss.asnumpy()), rel=1e-5, abs=1e-6)
    assert entropy == pytest.approx(float(expected_entropy.asnumpy()), rel=1e-5)
    ratio = np.exp(np.log((softmax_policy(weights, previous, mask) * taken).sum(-1)) - old)
    clipped = np.clip(ratio, 1.0 - clip, 1.0 + clip)
    assert (ratio * advantages > clipped * advantages).any()  # the clipped branch is exercised
    for name, mine, theirs in zip(("embedding", "w_input", "w_hidden", "bias", "w_output", "b_output"), grads,
                                  expected):
        theirs = theirs.asnumpy()
        assert mine.shape == theirs.shape, name
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6 * np.abs(theirs).max(), err_msg=name)


def test_a_policy_step_equals_the_first_step_of_the_loss_forward() -> None:
    weights, *_ = problem(3)
    tokens = np.zeros(BATCH, np.int64)
    h = np.zeros((BATCH, HIDDEN), np.float32)
    _, _, logits = policy_step(tokens, h, h.copy(), weights)
    embedding, w_input, w_hidden, bias, w_output, b_output = weights
    gates = embedding[0] @ w_input + bias
    c = 1 / (1 + np.exp(-gates[:HIDDEN])) * np.tanh(gates[2 * HIDDEN:3 * HIDDEN])
    expected = (1 / (1 + np.exp(-gates[3 * HIDDEN:])) * np.tanh(c)) @ w_output + b_output
    np.testing.assert_allclose(logits, np.broadcast_to(expected, logits.shape), rtol=1e-5, atol=1e-6)


def test_the_policy_runs_on_one_blas_thread_and_gives_the_threads_back():
    controllers = ThreadpoolController()
    before = [pool.num_threads for pool in controllers.select(user_api="blas").lib_controllers]
    with one_blas_thread():
        inside = [pool.num_threads for pool in ThreadpoolController().select(user_api="blas").lib_controllers]
    after = [pool.num_threads for pool in ThreadpoolController().select(user_api="blas").lib_controllers]
    assert inside and set(inside) == {1}
    assert after == before
