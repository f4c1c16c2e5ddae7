"""Config loading, validation messages (file:line:col, key, hint) and overrides."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from trainkit.config import load_config, load_config_text
from trainkit.errors import ConfigError

BASE = """\
seed: 0
data:
  name: linear
  n_samples: 40
model:
  name: linear
optimizer:
  name: sgd
  lr: 0.1
train:
  epochs: 3
"""


def errors_of(text: str, overrides=()) -> list:
    with pytest.raises(ConfigError) as e:
        load_config_text(textwrap.dedent(text), "cfg.yaml", overrides)
    return e.value.issues


# (config text, expected (line, key), message regex, hint regex or None)
BAD_CONFIGS = [
    (
        "typo_key",
        BASE.replace("  lr: 0.1", "  learning_rate: 0.1"),
        (9, "optimizer.learning_rate"),
        "unknown key 'learning_rate'",
        "did you mean 'lr'",
    ),
    (
        "typo_top_key",
        BASE + "trian: {epochs: 3}\n",
        (12, "trian"),
        "unknown key 'trian'",
        "did you mean 'train'",
    ),
    (
        "wrong_type",
        BASE.replace("epochs: 3", "epochs: ten"),
        (11, "train.epochs"),
        "valid integer.*got 'ten'",
        None,
    ),
    (
        "negative_lr",
        BASE.replace("lr: 0.1", "lr: -1"),
        (9, "optimizer.lr"),
        "greater than or equal to 0.*got -1",
        None,
    ),
    (
        "unknown_optimizer",
        BASE.replace("name: sgd", "name: adma"),
        (8, "optimizer.name"),
        "unknown optimizer 'adma'",
        "did you mean 'adam'",
    ),
    (
        "unknown_model",
        BASE.replace("name: linear\noptimizer", "name: mlpp\noptimizer"),
        (6, "model.name"),
        "unknown model 'mlpp'",
        "did you mean 'mlp'",
    ),
    (
        "unknown_dataset",
        BASE.replace("  name: linear\n  n_samples", "  name: moon\n  n_samples"),
        (3, "data.name"),
        "unknown dataset 'moon'",
        "did you mean 'moons'",
    ),
    (
        "missing_model",
        BASE.replace("model:\n  name: linear\n", ""),
        (1, "model"),
        "missing required key",
        "model: {name: linear}",
    ),
    (
        "missing_name",
        BASE.replace("  name: sgd\n", ""),
        (7, "optimizer"),
        "missing key 'name'",
        "adam",
    ),
    (
        "beta_range",
        BASE.replace("name: sgd", "name: adam\n  betas: [0.9, 1.5]"),
        (9, "optimizer.betas"),
        "beta parameter at index 1: 1.5",
        None,
    ),
    (
        "nesterov_without_momentum",
        BASE.replace("lr: 0.1", "lr: 0.1\n  nesterov: true"),
        (10, "optimizer.nesterov"),
        "Nesterov momentum requires a momentum",
        None,
    ),
    (
        "val_fraction_one",
        BASE.replace("n_samples: 40", "n_samples: 40\n  val_fraction: 1.0"),
        (5, "data.val_fraction"),
        "less than 1",
        None,
    ),
    (
        "gd_minibatch",
        BASE.replace("name: sgd", "name: gd").replace("epochs: 3", "epochs: 3\n  batch_size: 8"),
        (12, "train.batch_size"),
        "full-batch gradient descent",
        "batch_size: full",
    ),
    (
        "bad_dtype",
        BASE.replace("epochs: 3", "epochs: 3\n  dtype: float16"),
        (12, "train.dtype"),
        "'float32' or 'float64'.*got 'float16'",
        None,
    ),
    (
        "dtype_case",
        BASE.replace("epochs: 3", "epochs: 3\n  dtype: Float32"),
        (12, "train.dtype"),
        "got 'Float32'",
        "did you mean 'float32'",
    ),
    (
        "bad_activation",
        BASE.replace("  name: linear\noptimizer", "  name: mlp\n  activation: rellu\noptimizer"),
        (7, "model.activation"),
        "unknown activation 'rellu'",
        None,
    ),
    (
        "mapping_expected",
        BASE.replace("train:\n  epochs: 3", "train: [1, 2]"),
        (10, "train"),
        "expected a mapping",
        None,
    ),
    (
        "sequential_layer_typo",
        BASE.replace(
            "  name: linear\noptimizer",
            "  name: sequential\n  layers: [{name: linear, out_features: 4}, {name: relu, slope: 2}]\noptimizer",
        ),
        (7, "model.layers[1].slope"),
        "unknown key 'slope'",
        None,
    ),
]


@pytest.mark.parametrize("text,where,message,hint", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_is_reported_with_line_key_and_hint(text, where, message, hint):
    issues = errors_of(text)
    matching = [i for i in issues if i.key == where[1]]
    assert matching, f"no issue for {where[1]}: {[i.render() for i in issues]}"
    issue = matching[0]
    assert issue.source == "cfg.yaml"
    assert issue.line == where[0], issue.render()
    assert issue.column is not None
    import re

    assert re.search(message, issue.message), issue.render()
    if hint:
        assert issue.hint and re.search(hint, issue.hint), issue.render()


def test_every_error_is_reported_at_once():
    text = BASE.replace("lr: 0.1", "lr: -1\n  momentun: 0.9").replace("epochs: 3", "epochs: 0\n  batch_sise: 3")
    keys = {i.key for i in errors_of(text)}
    assert keys == {"optimizer.lr", "optimizer.momentun", "train.epochs", "train.batch_sise"}


@pytest.mark.parametrize(
    "text,message,hint",
    [
        ("data: {name: linear\nmodel: x\n", "invalid YAML", None),
        ("data:\n\tname: linear\n", "invalid YAML", "spaces, not tabs"),
        ("", "config is empty", "configs/linreg.yaml"),
        ("- a\n- b\n", "top level must be a mapping", None),
        (
            "data: !!python/object/apply:os.system ['echo hacked']\n",
            "is not allowed",
            "rejected for safety",
        ),
        ("data: !!python/name:os.system\n", "is not allowed", None),
        ("seed: 0\nseed: 1\n", "duplicate key", "silently keep only the last"),
    ],
    ids=["syntax", "tabs", "empty", "list_top", "python_tag_seq", "python_tag_scalar", "duplicate"],
)
def test_yaml_level_errors(text, message, hint):
    issues = errors_of(text)
    assert message in issues[0].message
    if hint:
        assert hint in (issues[0].hint or "")
    if text:
        assert issues[0].line is not None


def test_duplicate_key_names_first_line():
    issue = errors_of("seed: 0\nmodel: {name: linear}\nseed: 1\n")[0]
    assert (issue.line, issue.key) == (3, "seed") and "line 1" in issue.message


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


# ------------------------------------------------------------------ overrides


def test_override_sets_nested_values_parsed_as_yaml():
    cfg = load_config_text(
        BASE,
        "cfg.yaml",
        ["optimizer.lr=0.5", "model.name=mlp", "model.hidden=[8, 4]", "train.batch_size=full"],
    ).config
    assert cfg.optimizer.lr == 0.5
    assert cfg.model.hidden == [8, 4]
    assert cfg.train.batch_size == "full"


def test_override_can_switch_component_shorthand():
    cfg = load_config_text(
        BASE.replace("optimizer:\n  name: sgd\n  lr: 0.1", "optimizer: adam"),
        "c",
        ["optimizer.lr=0.01"],
    ).config
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 0.01


@pytest.mark.parametrize(
    "override,key,message,hint",
    [
        (
            "optimizer.learning_rate=0.1",
            "optimizer.learning_rate",
            "unknown key",
            "did you mean 'lr'",
        ),
        ("optimizer.lr=-3", "optimizer.lr", "greater than or equal to 0", None),
        ("optimizer.name=adma", "optimizer.name", "unknown optimizer", "did you mean 'adam'"),
        ("optimizer.lr", "", "must be in the form key.path=value", "--set optimizer.lr=0.01"),
        ("=3", "", "must be in the form", None),
        ("train.epochs=[1", "", "invalid YAML", None),
    ],
)
def test_override_errors_name_the_override(override, key, message, hint):
    issue = errors_of(BASE, [override])[0]
    assert issue.source == f"--set {override}"
    assert issue.key == key
    assert message in issue.message
    if hint:
        assert hint in issue.hint


def test_resolved_config_has_defaults_and_reloads_identically():
    loaded = load_config_text(BASE, "cfg.yaml")
    resolved = loaded.resolved()
    assert resolved["optimizer"] == {
        "name": "sgd",
        "lr": 0.1,
        "weight_decay": 0.0,
        "maximize": False,
        "momentum": 0.0,
        "dampening": 0.0,
        "nesterov": False,
    }
    assert resolved["train"]["dtype"] == "float32"
    assert resolved["model"]["init"] == {"name": "default", "std": 0.01, "gain": 1.0}
    again = load_config_text(yaml.safe_dump(resolved), "again.yaml").resolved()
    assert again == resolved


def test_shorthand_component_names():
    cfg = load_config_text("data: linear\nmodel: linear\noptimizer: adam\nloss: mae\n", "c").config
    assert (cfg.data.name, cfg.model.name, cfg.optimizer.name, cfg.loss.name) == (
        "linear",
        "linear",
        "adam",
        "mae",
    )


def test_init_from_file_key_alias():
    cfg = load_config_text(
        BASE.replace("  name: linear\noptimizer", "  name: linear\n  init: {from: w.npz}\noptimizer"),
        "c",
    ).config
    assert cfg.model.init.from_ == "w.npz"
    assert load_config_text(BASE, "c", ["model.init=xavier_uniform"]).config.model.init.name == "xavier_uniform"
