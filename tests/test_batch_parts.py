"""Batch parts (nn/network.py): conv nets of per-sample layers train large batches as PARTS
parts on their own layer copies, on threads (backend/threads.py: Lanes). The gradient must be
the whole batch's, the results must not depend on how many threads ran the parts, and nets
whose layers mix samples must never split."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest
from test_conv_runs import write_images

import trainkit
from trainkit import api
from trainkit.backend.threads import Lanes, lanes
from trainkit.config import load_config_text
from trainkit.nn import network

NET = """
seed: 0
data: {{name: npz, path: img.npz, val_fraction: 0}}
model:
  name: sequential
  layers:
    - {{name: conv2d, out_channels: 6, kernel_size: 3, padding: 1}}
    - relu
    - {{name: max_pool2d, kernel_size: 2}}
    - {{name: conv2d, out_channels: 8, kernel_size: 3}}
    - relu{extra}
    - flatten
    - linear
optimizer: {{name: adam, lr: 0.01}}
train: {{epochs: 2, batch_size: 20, dtype: float64, threads: {threads}}}
"""


@pytest.fixture
def small_split(monkeypatch):
    """Split even this test's small batches (LeNet's need no patch: SPLIT_MACS is ~1/5 of one)."""
    monkeypatch.setattr(network, "SPLIT_MACS", 0)


def build(tmp_path, extra="", threads=1):
    if not (tmp_path / "img.npz").exists():
        write_images(tmp_path / "img.npz", (2, 8, 8), n=60)
    text = NET.format(extra=extra, threads=threads)
    return api.build(load_config_text(text, str(tmp_path / "c.yaml"), base_dir=tmp_path))


def step(net, x, dy, lanes):
    net.lanes = lanes
    y = net.forward(x, training=True).copy()
    net.backward(dy.copy())
    return y, net.grad.copy()


@pytest.mark.usefixtures("small_split")
def test_the_parts_give_the_whole_batchs_outputs_and_gradient(tmp_path):
    exp = build(tmp_path)
    net = exp.net
    assert net.split
    x = exp.arrays["X_train"][:20]
    dy = np.random.default_rng(1).normal(size=(20, 1))
    y2, g2 = step(net, x, dy, 2)
    assert net._bounds == [(0, 10), (10, 20)]
    network.SPLIT_MACS = 10**18  # the same net, one part
    y1, g1 = step(net, x, dy, 1)
    assert net._bounds is None
    np.testing.assert_allclose(y2, y1, rtol=1e-13, atol=0)
    np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-15)  # the batch's sum, in another order
    assert np.abs(g1).min() < np.abs(g1).max()  # a real gradient, not zeros


@pytest.mark.usefixtures("small_split")
def test_one_lane_or_two_give_bit_identical_results(tmp_path):
    """The parts are fixed by the config; the lanes only decide whether they run at once."""
    net = build(tmp_path).net
    x = build(tmp_path).arrays["X_train"][:20]
    dy = np.random.default_rng(2).normal(size=(20, 1))
    y1, g1 = step(net, x, dy, 1)
    for _ in range(3):
        y2, g2 = step(net, x, dy, 2)
        np.testing.assert_array_equal(y2, y1)
        np.testing.assert_array_equal(g2, g1)


@pytest.mark.usefixtures("small_split")
def test_training_on_one_thread_or_two_ends_at_the_same_parameters(tmp_path):
    """DESIGN: same config + same seed -> bit-identical results, whatever the machine's cores."""
    runs = []
    for threads in (1, 2):
        build(tmp_path)  # writes the data once
        text = NET.format(extra="", threads=threads)
        r = trainkit.train(load_config_text(text, str(tmp_path / "c.yaml"), base_dir=tmp_path))
        runs.append(r)
    assert runs[0].info["threads"] == 1 and runs[1].info["threads"] == 2
    for k, v in runs[0].params.items():
        np.testing.assert_array_equal(v, runs[1].params[k])
    assert runs[0].metrics["train_loss"] == runs[1].metrics["train_loss"]


@pytest.mark.usefixtures("small_split")
@pytest.mark.parametrize(
    "extra,splits",
    [
        ("", True),
        ("\n    - {name: batch_norm2d}", False),  # statistics over the whole batch
        ("\n    - {name: dropout, p: 0.2}", False),  # the batch's masks from one stream
        ("\n    - {name: dropout2d, p: 0.2}", False),
        ("\n    - {name: layer_norm}", True),  # per sample
    ],
)
def test_only_nets_of_per_sample_layers_split(tmp_path, extra, splits):
    assert build(tmp_path, extra).net.split == splits


def test_mlps_and_small_batches_do_not_split(tmp_path, monkeypatch):
    exp = build(tmp_path)
    x = exp.arrays["X_train"][:20]
    exp.net.forward(x, training=True)
    assert exp.net._bounds is None  # this small net's batch is far below SPLIT_MACS
    monkeypatch.setattr(network, "SPLIT_MACS", 3 * 20 * exp.net.macs_per_sample)
    exp.net.forward(x, training=True)
    assert exp.net._bounds is not None  # at the threshold
    exp.net.forward(x[:19], training=True)
    assert exp.net._bounds is None  # an epoch's last, smaller batch
    exp.net.forward(x, training=False)
    assert exp.net._bounds is None  # evaluation never splits
    mlp = load_config_text(
        "data: {name: linear}\nmodel: {name: mlp, hidden: [8]}\noptimizer: {name: sgd, lr: 0.1}\n",
        str(tmp_path / "m.yaml"),
        base_dir=tmp_path,
    )
    assert not api.build(mlp).net.split


def test_a_lanes_error_is_raised_in_the_callers_thread():
    lanes = Lanes(2)
    ran = []

    def bad():
        raise ValueError("in a lane")

    with pytest.raises(ValueError, match="in a lane"):
        lanes.run([lambda: ran.append(threading.current_thread().name), bad])
    assert ran == [threading.current_thread().name]  # the first task runs in the caller's thread
    lanes.run([lambda: ran.append(1), lambda: ran.append(2)])
    assert sorted(ran[1:]) == [1, 2]


def test_an_interrupted_calls_late_result_is_not_taken_for_the_next_ones():
    """Ctrl-C while the caller waits leaves the lane's result of that call behind: the next
    call must wait for its own task's result, not return on the stale one."""
    lanes = Lanes(2)
    _, done_queue = lanes._lanes[0]
    done_queue.put((lanes._token, None))  # what an interrupted wait leaves
    done = []
    lanes.run([lambda: None, lambda: (time.sleep(0.2), done.append("new"))])
    assert done == ["new"]


@pytest.mark.usefixtures("small_split")
@pytest.mark.parametrize("threads,lanes,blas", [(1, 1, 1), (2, 2, 1), (4, 2, 2)])
def test_the_parts_run_on_lanes_that_share_the_blas_threads(tmp_path, monkeypatch, threads, lanes, blas):
    """threads: N gives the parts min(2, N) lanes and each lane N // lanes BLAS threads (a
    4-core machine keeps all four busy), restored after the run."""
    from trainkit.backend import threads as th

    for k in th._ENV:  # a parent's cap (compare's workers) would lower `threads`
        monkeypatch.delenv(k, raising=False)

    build(tmp_path)
    before = th.current_blas_threads()
    seen = []
    text = NET.format(extra="", threads=threads)
    exp_net = []
    trainkit.train(
        load_config_text(text, str(tmp_path / "c.yaml"), base_dir=tmp_path),
        on_start=lambda exp: exp_net.append(exp.net),
        on_epoch=lambda row: seen.append((exp_net[0].lanes, th.current_blas_threads())),
    )
    assert set(seen) == {(lanes, blas)}
    assert th.current_blas_threads() == before


@pytest.mark.usefixtures("small_split")  # also restores SPLIT_MACS, which this test sets
def test_a_batch_of_fewer_samples_than_parts_runs_whole(tmp_path):
    """An epoch's last batch of one sample (n_train % batch_size == 1), or a data-parallel
    rank's single row, cannot be cut into PARTS non-empty parts: it runs through the network
    whole, and a run whose last batch is one sample trains to its end."""
    exp = build(tmp_path)
    net = exp.net
    x = exp.arrays["X_train"][:1]
    dy = np.random.default_rng(5).normal(size=(1, 1))
    y2, g2 = step(net, x, dy, 2)
    assert net._bounds is None
    network.SPLIT_MACS = 10**18
    y1, g1 = step(net, x, dy, 1)
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_array_equal(g2, g1)
    network.SPLIT_MACS = 0
    text = NET.format(extra="", threads=2).replace("batch_size: 20", "batch_size: 59")  # 60 samples: 59, then 1
    r = trainkit.train(load_config_text(text, str(tmp_path / "c.yaml"), base_dir=tmp_path))
    assert r.status == "completed"


def test_the_lanes_run_under_the_callers_numpy_error_state():
    """np.errstate is per thread: a lane must take the caller's (the trainer ignores overflow,
    which surfaces as a non-finite loss), not numpy's default, which warns."""
    lanes = Lanes(2)

    def overflow():
        np.full(3, 1e308) * 10.0

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="ignore"):
            lanes.run([overflow, overflow])
        with np.errstate(over="raise"), pytest.raises(FloatingPointError):
            lanes.run([lambda: None, overflow])


@pytest.mark.usefixtures("small_split")
def test_a_diverging_run_on_two_lanes_reports_no_numpy_warnings(tmp_path):
    """A diverging run is reported as such ("loss became nan"), with no RuntimeWarning from
    numpy on stderr, whether its parts ran on one thread or two."""
    build(tmp_path)
    text = NET.format(extra="", threads=2).replace("adam, lr: 0.01", "sgd, lr: 1.0e+100")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = trainkit.train(load_config_text(text, str(tmp_path / "c.yaml"), base_dir=tmp_path))
    assert r.status == "diverged" and "loss became nan" in r.stop_reason
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


@pytest.mark.usefixtures("small_split")
def test_a_split_run_stopped_mid_epoch_resumes_bit_exactly(tmp_path):
    """Kill (as SIGINT would) after step 4 of 6 on two lanes and resume: the parameters and
    history equal an uninterrupted run's (parts keep no state from one step to the next)."""
    from test_runs import train_into

    build(tmp_path)
    (tmp_path / "t.yaml").write_text(NET.format(extra="", threads=2))
    straight = train_into(tmp_path / "a", tmp_path / "t.yaml")
    first = train_into(tmp_path / "b", tmp_path / "t.yaml", stop_after_step=4)
    assert first.status == "interrupted"
    resumed = train_into(tmp_path / "b", tmp_path / "t.yaml", resume=True)
    assert resumed.epochs_run == 2
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])
    assert resumed.history == straight.history


@pytest.mark.usefixtures("small_split")
@pytest.mark.parametrize("n", [2, 3])
def test_data_parallel_ranks_of_a_split_net_give_the_single_process_parameters(n, tmp_path):
    """Each rank cuts its rows of the batch into parts; the all-reduced gradient is the batch's.
    79 samples in batches of 13 end in a batch of 1 row: a rank with 1 row (or a stand-in row)
    runs it whole."""
    import json

    from test_mpi import CNN1D, assert_same, run_mpi

    cfg = tmp_path / "c.yaml"
    cfg.write_text(CNN1D)
    one = api.train(cfg)
    assert api.build(load_config_text(CNN1D, str(cfg), base_dir=tmp_path)).net.split
    out = tmp_path / "out.json"
    r = run_mpi(n, "results", out, cfg, worker=True, env={"MPI_TEST_SPLIT_MACS": "0"})
    assert r.code == 0, r.stderr
    got = json.loads(out.read_text())[0]
    assert_same(one, got["params"], got["history"], 1e-10)


def _per_sample_cases():
    from test_conv import LAYERS

    from trainkit import registry

    for name, kwargs, shape in LAYERS:
        if len(shape) > 1 and registry.get("layers", name).build.samples_apart:
            yield name, kwargs, shape


@pytest.mark.usefixtures("small_split")
@pytest.mark.parametrize("name,kwargs,shape", list(_per_sample_cases()))
def test_every_per_sample_layer_gives_the_batchs_gradient_in_parts(name, kwargs, shape):
    """Each registered layer that declares samples_apart, after a 1×1 conv (a net must hold a
    conv to split): its copies share nothing mutable, so two lanes give one lane's bits, and
    both the unsplit batch's outputs and gradient (summed in another order)."""
    from test_conv import make

    from trainkit.config.base import InitScheme

    conv = "conv1d" if len(shape) == 2 else "conv2d"
    layers = [make(conv, out_channels=shape[0], kernel_size=1), make(name, **kwargs), make("flatten")]
    net = network.Network(layers, shape, np.float64)
    net.init(InitScheme(name="default"), np.random.default_rng(0))
    assert net.split
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, (7, int(np.prod(shape)))).astype(np.float64)  # ties for the max pools
    dy = rng.normal(size=(7, net.out_features))
    y2, g2 = step(net, x, dy, 2)
    y1, g1 = step(net, x, dy, 1)
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_array_equal(g2, g1)
    network.SPLIT_MACS = 10**18
    y, g = step(net, x, dy, 1)
    np.testing.assert_allclose(y2, y, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g2, g, rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_lanes_of_its_own():
    """Threads do not survive a fork: a child that trains split batches must start new lanes,
    not queue work for the parent's (it would wait forever)."""
    parent = lanes(2)
    parent.run([lambda: None, lambda: None])
    pid = os.fork()
    if pid == 0:  # the child: any failure, or a hang past the alarm, is a nonzero exit
        signal.alarm(10)
        try:
            done = []
            lanes(2).run([lambda: done.append(1), lambda: done.append(2)])
            os._exit(0 if sorted(done) == [1, 2] and lanes(2) is not parent else 1)
        except BaseException:  # noqa: BLE001 - the child must never return into pytest
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("n_tasks", [3, 4, 5])
def test_more_tasks_than_lanes_run_in_rounds(n_tasks):
    ran = []
    Lanes(2).run([lambda k=k: ran.append(k) for k in range(n_tasks)])
    assert sorted(ran) == list(range(n_tasks))
