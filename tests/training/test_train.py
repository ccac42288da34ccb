"""The training engine: LR schedules, real proxy training on digits, divergence and determinism."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nas.models.builder import build_network
from nas.runtime.devicelock import device_lock
from nas.spec import ArchSpec
from nas.training.config import DataConfig, TrainConfig
from nas.training.data import open_data
from nas.training.engine import TrainingDiverged, learning_rates, recalibrate_batch_norm
from nas.training.proxy import SCORE_PYNATIVE_MAX_BATCHES, score_mode, train_proxy
from search_spaces import references
from tests.support.datasets import write_idx


def tiny_spec(classes: int = 10) -> ArchSpec:
    return references.get("mobilenet_v3_small", 0.35).replace(num_classes=classes, resolution=16, dropout=0.0)


def test_cosine_schedule_with_warmup_and_linear_scaling() -> None:
    config = TrainConfig(epochs=4, lr=0.1, base_batch=64, warmup_epochs=1, schedule="cosine")
    rates = learning_rates(config, steps_per_epoch=10, global_batch=128)
    assert len(rates) == 40
    assert rates[9] == pytest.approx(0.2)  # warm-up ends at the scaled peak 0.1 * 128 / 64
    assert rates[0] == pytest.approx(0.02)
    assert rates[10] == pytest.approx(0.2)
    assert rates[25] == pytest.approx(0.1 * (1 + math.cos(math.pi * 15 / 30)), rel=1e-5)
    assert np.all(np.diff(rates[10:]) <= 1e-9)


def test_exponential_staircase_schedule() -> None:
    config = TrainConfig(epochs=6, lr=0.256, base_batch=4096, schedule="exponential", decay_rate=0.97,
                         decay_epochs=2.4)
    rates = learning_rates(config, steps_per_epoch=5, global_batch=4096)
    assert rates[0] == pytest.approx(0.256)
    assert rates[12] == pytest.approx(0.256 * 0.97)  # epoch 2.4 starts the second stair
    assert rates[25] == pytest.approx(0.256 * 0.97 ** 2)


def test_bad_recipe_values_are_named() -> None:
    with pytest.raises(ValueError, match="train.optimizer"):
        TrainConfig(optimizer="adamw")
    with pytest.raises(ValueError, match="train.epochs"):
        TrainConfig(epochs=0)


@pytest.fixture(scope="module")
def digits():
    return open_data(DataConfig("digits", resolution=16))


def test_recalibration_recomputes_batch_norm_statistics_from_training_batches(digits) -> None:
    net = build_network(tiny_spec().replace(bn_momentum=0.99), num_classes=10, seed=0)
    weights = {p.name: p.asnumpy().copy() for p in net.trainable_params()}
    original = net.stem.bn.bn_train
    images, _ = next(digits.train(64, epoch=0).create_tuple_iterator(num_epochs=1))
    # One batch at momentum 1: the moving statistics become that batch's, computed here by hand
    # from the stem convolution's output (4,096 values per channel: biased and unbiased variance agree).
    used = recalibrate_batch_norm(net, digits.train(64, epoch=0), batches=1, momentum=1.0)
    assert used == 1
    stem = net.stem.conv(images).asnumpy().astype(np.float64)
    channels = stem.transpose(1, 0, 2, 3).reshape(stem.shape[1], -1)
    np.testing.assert_allclose(net.stem.bn.moving_mean.asnumpy(), channels.mean(axis=1), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(net.stem.bn.moving_variance.asnumpy(), channels.var(axis=1, ddof=1), rtol=1e-2,
                               atol=1e-4)
    assert net.stem.bn.bn_train is original  # the training primitive (momentum 0.99) is restored
    for param in net.trainable_params():
        np.testing.assert_array_equal(param.asnumpy(), weights[param.name])


@pytest.mark.slow
def test_proxy_training_learns_and_is_deterministic(digits) -> None:
    config = TrainConfig(epochs=3, batch_size=64, lr=0.2, seed=5)
    first = train_proxy(tiny_spec(), digits, config)
    assert first.top1 > 0.5  # chance is 0.1
    assert first.steps == 3 * (1437 // 64)
    second = train_proxy(tiny_spec(), digits, config)
    assert second.top1 == first.top1
    assert second.train_loss == pytest.approx(first.train_loss, rel=1e-5)


def test_divergence_is_a_named_failure(digits) -> None:
    with pytest.raises(TrainingDiverged, match="loss .* at epoch 1"):
        train_proxy(tiny_spec(), digits, TrainConfig(epochs=1, lr=90.0, max_loss=20.0))


def _train_in_background(lock_dir: str, started, finished) -> None:
    import os

    os.environ["NAS_LOCK_DIR"] = lock_dir
    data = open_data(DataConfig("digits", resolution=16))
    started.set()
    train_proxy(tiny_spec(), data, TrainConfig(epochs=4, batch_size=32), device="CPU")
    finished.set()


@pytest.mark.slow
def test_a_measurement_gets_the_device_between_training_steps(tmp_path, monkeypatch) -> None:
    """Training holds the device shared per step, so an exclusive measurement waits one step,
    not a whole training run."""
    import multiprocessing as mp
    import time

    monkeypatch.setenv("NAS_LOCK_DIR", str(tmp_path))
    context = mp.get_context("spawn")
    started, finished = context.Event(), context.Event()
    worker = context.Process(target=_train_in_background, args=(str(tmp_path), started, finished))
    worker.start()
    try:
        assert started.wait(120)
        time.sleep(8)  # well into training (compiling and stepping)
        waited = time.monotonic()
        with device_lock("CPU", exclusive=True, timeout=30):
            waited = time.monotonic() - waited
            assert not finished.is_set()
        assert waited < 5
    finally:
        worker.join(300)
    assert finished.is_set()


def test_a_small_scoring_runs_op_by_op_and_a_large_one_compiled(digits, tmp_path, monkeypatch) -> None:
    """Digits' scoring is 22 recalibration batches and 6 held-out ones: op by op. Fashion-MNIST-sized
    IDX files with 7,000 held-out images (110 batches of 64) are scored compiled."""
    assert score_mode(digits, 64) == "pynative"
    monkeypatch.setenv("NAS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    write_idx(tmp_path / "data" / "fashion-mnist", train=10000, test=10)
    large = open_data(DataConfig("fashion-mnist", resolution=16, held_out=0.7))
    assert large.sizes["held_out"] == 7000 and score_mode(large, 64) == "graph"
    assert 22 + 6 <= SCORE_PYNATIVE_MAX_BATCHES < 50 + 110
