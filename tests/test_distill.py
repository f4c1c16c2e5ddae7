"""Knowledge distillation (compress/distill.py): the loss and its gradient against torch's
kl_div formulation (float64, 1e-10) and central finite differences, the teacher's outputs
computed from its checkpoint, and a teacher that does not fit the data refused (exit 2)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require

import trainkit
from trainkit import registry
from trainkit.compress.distill import DistillLoss
from trainkit.config import load_config
from trainkit.runs.inference import open_run

rng = np.random.default_rng(0)


def losses(name, **kw):
    return registry.build("losses", registry.get("losses", name).schema(**kw))


def distill_loss(name, T, a, **kw):
    return DistillLoss(losses(name, **kw), T, a)


CLASSIFY = [  # (temperature, alpha, reduction, label smoothing)
    (4.0, 0.9, "mean", 0.0),
    (1.0, 0.5, "mean", 0.0),
    (2.5, 0.3, "sum", 0.0),
    (3.0, 1.0, "mean", 0.1),
    (0.5, 0.0, "mean", 0.0),
]


@pytest.mark.parametrize("T, a, reduction, eps", CLASSIFY)
def test_classification_loss_and_gradient_equal_torch(T, a, reduction, eps):
    torch = require("torch")
    F = torch.nn.functional
    n, c = 7, 5
    s, t = rng.normal(size=(n, c)) * 3, rng.normal(size=(n, c)) * 3
    y = rng.integers(0, c, n)
    loss = distill_loss("cross_entropy", T, a, reduction=reduction, label_smoothing=eps)
    loss.teacher_out = t
    value = loss.forward(s, y)
    grad = loss.backward()

    st = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(t, dtype=torch.float64)
    kl = F.kl_div(
        F.log_softmax(st / T, 1), F.softmax(tt / T, 1), reduction="batchmean" if reduction == "mean" else "sum"
    )
    ce = F.cross_entropy(st, torch.tensor(y), reduction=reduction, label_smoothing=eps)
    ref = kl * T * T * a + (1 - a) * ce
    ref.backward()
    assert value == pytest.approx(ref.item(), abs=1e-10, rel=1e-10)
    np.testing.assert_allclose(grad, st.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("a, reduction", [(0.9, "mean"), (0.4, "sum")])
def test_regression_loss_and_gradient_equal_torch(a, reduction):
    torch = require("torch")
    F = torch.nn.functional
    s, t, y = (rng.normal(size=(6, 2)) for _ in range(3))
    loss = distill_loss("mse", 4.0, a, reduction=reduction)
    loss.teacher_out = t
    value = loss.forward(s, y)
    grad = loss.backward()
    st = torch.tensor(s, requires_grad=True)
    ref = a * F.mse_loss(st, torch.tensor(t), reduction=reduction) + (1 - a) * F.mse_loss(
        st, torch.tensor(y), reduction=reduction
    )
    ref.backward()
    assert value == pytest.approx(ref.item(), abs=1e-10, rel=1e-10)
    np.testing.assert_allclose(grad, st.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["cross_entropy", "mse"])
def test_gradient_matches_central_finite_differences(name):
    n, c = 5, 4
    s, t = rng.normal(size=(n, c)), rng.normal(size=(n, c))
    y = rng.integers(0, c, n) if name == "cross_entropy" else rng.normal(size=(n, c))
    loss = distill_loss(name, 3.0, 0.7)
    loss.teacher_out = t
    loss.forward(s, y)
    grad = loss.backward()
    h, fd = 1e-6, np.zeros_like(s)
    for i in np.ndindex(s.shape):
        up, down = s.copy(), s.copy()
        up[i] += h
        down[i] -= h
        fd[i] = (loss.forward(up, y) - loss.forward(down, y)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_without_teacher_outputs_it_is_the_plain_loss():
    s, y = rng.normal(size=(6, 3)), rng.integers(0, 3, 6)
    plain, loss = losses("cross_entropy"), distill_loss("cross_entropy", 4.0, 0.9)
    assert loss.forward(s, y) == plain.forward(s, y)
    np.testing.assert_array_equal(loss.backward(), plain.backward())


# ------------------------------------------------------------------ runs

TEACHER = """
seed: 0
data: {name: blobs, n_samples: 300, n_classes: 3, n_features: 4, cluster_std: 2.0, val_fraction: 0.2}
model: {name: mlp, hidden: [16]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 15, batch_size: 32}
"""
STUDENT = TEACHER.replace("hidden: [16]", "hidden: [4]").replace(
    "seed: 0", "seed: 0\ndistill: {teacher: teacher, temperature: 2.0, alpha: ALPHA}"
)


@pytest.fixture
def teacher(tmp_path, write_config):
    trainkit.train(write_config(TEACHER, "teacher.yaml"), output_dir=tmp_path / "teacher")
    return tmp_path / "teacher"


def test_alpha_zero_is_the_undistilled_run(teacher, write_config):
    plain = trainkit.train(write_config(STUDENT.split("distill:")[0] + STUDENT.split("}\n", 1)[1], "plain.yaml"))
    zero = trainkit.train(write_config(STUDENT.replace("ALPHA", "0.0"), "student.yaml"))
    assert zero.history == plain.history
    for k in plain.params:
        np.testing.assert_array_equal(zero.params[k], plain.params[k])


def test_the_teacher_outputs_come_from_its_checkpoint(teacher, write_config):
    """The loss sees the teacher run's own predictions for each training batch (eval mode)."""
    seen = []
    run = open_run(teacher)

    def on_start(exp):
        hook = exp.trainer.hooks[0]
        fn = hook.teacher

        def recording(xb):
            out = fn(xb)
            seen.append((np.array(xb), out))
            return out

        hook.teacher = recording

    result = trainkit.train(load_config(write_config(STUDENT.replace("ALPHA", "1.0"))), on_start=on_start)
    assert len(seen) == 15 * 8
    for xb, out in seen[:10]:
        np.testing.assert_allclose(out, run.net.predict(xb), rtol=1e-6)
    assert result.info["teacher"] == str(teacher)
    # alpha = 1 (labels unused): the student learns the teacher's answers
    student = trainkit.train(load_config(write_config(STUDENT.replace("ALPHA", "1.0"), "again.yaml")))
    assert student.metrics["val_accuracy"] >= 0.8


def test_teacher_path_is_kept_in_the_saved_config(teacher, tmp_path, write_config, cli):
    config = write_config(STUDENT.replace("ALPHA", "0.5"))
    r = cli("train", config, "-d", tmp_path / "runs" / "student", "--json")
    assert r.code == 0, r.stderr
    again = cli("train", tmp_path / "runs" / "student" / "config.yaml", "-d", tmp_path / "again", "--json")
    assert again.code == 0, again.stderr
    assert again.json["history"] == r.json["history"]


@pytest.mark.parametrize(
    "change, message",
    [
        ("n_classes: 3", r"distill\.teacher: the teacher has 3 classes, this run's data has 4"),
        ("n_features: 4", r"distill\.teacher: the teacher takes 4 features, this run's data has 5"),
    ],
)
def test_a_teacher_that_does_not_fit_the_data_exits_2(teacher, write_config, cli, change, message):
    bigger = {"n_classes: 3": "n_classes: 4", "n_features: 4": "n_features: 5"}[change]
    config = write_config(STUDENT.replace("ALPHA", "0.5").replace(change, bigger))
    r = cli("train", config)
    assert r.code == 2 and "Traceback" not in r.stderr
    assert f"{config}:2:" in r.stderr and "distill.teacher" in r.stderr
    import re

    assert re.search(message, r.stderr), r.stderr


def test_a_teacher_that_is_a_file_is_not_reported_missing(teacher, write_config, cli):
    """A file in the run (its checkpoint) exists: the error says it is no directory, and
    does not tell the user to train the teacher again."""
    config = write_config(STUDENT.replace("ALPHA", "0.5").replace("teacher: teacher", "teacher: teacher/best.npz"))
    r = cli("train", config, "--json")
    assert r.code == 2 and r.json["error"]["type"] == "config", r.stdout
    message = r.json["error"]["message"]
    assert f"teacher {teacher / 'best.npz'} is a file, not a run directory" in message, message
    assert "not found" not in message and "train the teacher first" not in message


def test_the_teacher_cannot_be_the_students_own_run_dir(teacher, write_config, cli):
    """`--output-dir TEACHER --overwrite` would delete the teacher it distils from."""
    before = (teacher / "checkpoint.npz").read_bytes()
    config = write_config(STUDENT.replace("ALPHA", "0.5"))
    r = cli("train", config, "--output-dir", teacher, "--overwrite", "--json")
    assert r.code == 2 and r.json["error"]["type"] == "config", r.stdout
    assert "is this run's own output directory" in r.json["error"]["message"]
    assert (teacher / "checkpoint.npz").read_bytes() == before


def test_a_regression_student_cannot_distill_from_a_classifier(teacher, write_config, cli):
    text = (
        STUDENT.replace("ALPHA", "0.5")
        .replace("name: blobs", "name: linear")
        .replace(", n_classes: 3, n_features: 4, cluster_std: 2.0", "")
    )
    r = cli("train", write_config(text))
    assert r.code == 2 and "distill.teacher" in r.stderr, r.stderr


def test_teacher_outputs_are_converted_between_the_runs_scalings(tmp_path, write_config):
    """A teacher trained on standardized inputs and targets, a student on raw ones: the student
    sees the teacher's predictions in its own (raw) units."""
    from dataclasses import replace

    from trainkit.compress.distill import teacher_fn

    text = """
    seed: 0
    data: {name: linear, n_samples: 80, n_features: 3, scale: minmax, scale_target: standardize, val_fraction: 0}
    model: {name: mlp, hidden: [8]}
    optimizer: {name: adam, lr: 0.01}
    train: {epochs: 3, batch_size: 16, dtype: float64}
    """
    trainkit.train(write_config(text, "teacher.yaml"), output_dir=tmp_path / "teacher")
    teacher = open_run(tmp_path / "teacher")
    ts = teacher.state
    raw_state = replace(ts, scale="none", offset=None, factor=None, target_offset=None, target_factor=None)
    x = rng.normal(size=(5, 3))
    expected = ts.unscaled_targets(teacher.net.predict((x - np.asarray(ts.offset)) / np.asarray(ts.factor)))
    np.testing.assert_allclose(teacher_fn(teacher, raw_state, np.float64)(x), expected, rtol=1e-12)
    same = teacher_fn(teacher, ts, np.float64)  # same scalings: the teacher's outputs as they are
    np.testing.assert_array_equal(same(x), teacher.net.predict(x))


def test_resume_of_a_distilled_run_is_bit_exact(teacher, tmp_path, write_config):
    from test_runs import read, train_into

    config = write_config(
        STUDENT.replace("ALPHA", "0.7").replace("batch_size: 32}", "batch_size: 32, checkpoint_every: 1}")
    )
    straight = train_into(tmp_path / "a", config)
    assert train_into(tmp_path / "b", config, stop_after_step=29).status == "interrupted"
    resumed = train_into(tmp_path / "b", config, resume=True)
    for k in straight.params:
        np.testing.assert_array_equal(resumed.params[k], straight.params[k])
    assert read(tmp_path / "b") == read(tmp_path / "a")


SCALED_TEACHER = """\
seed: 0
data: {name: linear, n_samples: 40, n_features: 3, weights: [300.0, -200.0, 100.0], bias: 500.0,
  scale: minmax, scale_target: standardize, val_fraction: 0}
model: {name: mlp, hidden: [8]}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 3, batch_size: 16, dtype: float64}
"""


def test_scaled_targets_distilled_train_loss_is_in_the_targets_units(tmp_path):
    """With scale_target, train_loss is reported in the target's units; under distillation the
    teacher term must be too: (1 − α)·mse(student, y) + α·mse(student, teacher), all unscaled."""
    from trainkit import api

    (tmp_path / "teacher.yaml").write_text(SCALED_TEACHER)
    trainkit.train(tmp_path / "teacher.yaml", output_dir=tmp_path / "teacher")
    student = tmp_path / "student.yaml"  # lr 0: the student stays at its initial parameters
    student.write_text(
        SCALED_TEACHER.replace("lr: 0.01", "lr: 0.0").replace(
            "epochs: 3, batch_size: 16", "epochs: 1, batch_size: full"
        )
        + f"distill: {{teacher: {tmp_path / 'teacher'}, alpha: 0.5}}\n"
    )
    exp = api.build(load_config(student))
    X, y = exp.arrays["X_train"], exp.data["train"].y.reshape(-1, 1)
    s = exp.state.unscaled_targets(exp.net.predict(X))
    teacher = open_run(tmp_path / "teacher")
    t = teacher.state.unscaled_targets(teacher.net.predict(X))  # the same data scaling: the same inputs
    expected = 0.5 * np.mean((s - y) ** 2) + 0.5 * np.mean((s - t) ** 2)
    assert np.ravel(exp.state.target_factor)[0] > 50  # the units matter: in standard deviations, 50² times less
    assert trainkit.train(student).history[0]["train_loss"] == pytest.approx(expected, rel=1e-10)
