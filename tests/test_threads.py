"""BLAS threads by problem size (`train.threads`), and the pool restored after a run."""

from __future__ import annotations

import pytest
from conftest import require

import trainkit
from trainkit import api
from trainkit.backend import threads
from trainkit.config import load_config_text
from trainkit.errors import ConfigError

require("threadpoolctl")

MLP = (
    "seed: 0\ndata: {{name: moons, n_samples: 256, val_fraction: 0}}\n"
    "model: {{name: mlp, hidden: [{h}, {h}]}}\noptimizer: {{name: adam, lr: 0.01}}\n"
    "train: {{epochs: 1, batch_size: {b}{extra}}}\n"
)


@pytest.fixture
def no_env(monkeypatch):
    for k in threads._ENV:
        monkeypatch.delenv(k, raising=False)


def test_auto_gives_one_thread_per_chunk_of_work_up_to_the_cores(no_env, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 8)
    assert threads.auto_threads(1000) is None  # tiny: the BLAS is single-threaded there anyway
    assert threads.auto_threads(threads.TINY) == 1
    assert threads.auto_threads(3 * threads.PER_THREAD) == 3
    assert threads.auto_threads(100 * threads.PER_THREAD) == 8
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # compare's workers
    assert threads.auto_threads(100 * threads.PER_THREAD) == 1
    assert threads.resolve_threads(4, 1000) == 1  # the environment caps a number too
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    assert threads.resolve_threads(4, 1000) == 4  # else a number is taken as given


def test_a_small_mlp_trains_on_one_blas_thread_and_the_pool_is_restored(no_env):
    """The 128x128 MLP that took 9.9 s on OpenBLAS's default threads (0.32 s on one)."""
    before = threads.current_blas_threads()
    seen = []
    loaded = load_config_text(MLP.format(h=128, b=32, extra=""), "c.yaml")
    exp = api.build(loaded)
    assert exp.threads == 1 and exp.info["threads"] == 1
    trainkit.train(loaded, on_epoch=lambda row: seen.append(threads.current_blas_threads()))
    assert seen == [1]
    assert threads.current_blas_threads() == before


def test_train_threads_overrides_auto(no_env):
    seen = []
    loaded = load_config_text(MLP.format(h=128, b=32, extra=", threads: 2"), "c.yaml")
    trainkit.train(loaded, on_epoch=lambda row: seen.append(threads.current_blas_threads()))
    assert seen == [2]


@pytest.mark.parametrize("bad", ["0", "many", "-1"])
def test_bad_threads_setting_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="train.threads"):
        load_config_text(MLP.format(h=8, b=32, extra=f", threads: {bad}"), "c.yaml")


def test_compare_workers_keep_one_blas_thread_each(no_env, write_config):
    from trainkit.compare.runner import compare

    path = write_config(MLP.format(h=128, b=32, extra=", threads: 2"))
    comp = compare(path, specs=["sgd", "adam"], jobs=2)
    assert [r["info"]["threads"] for r in comp.runs] == [1, 1]
