"""Config loading, validation messages (file:line:col, key, hint) and overrides."""

from __future__ import annotations

import re
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
    (  # trainkit's rule and its reason, not "gradient descent" (torch's LBFGS takes any batch)
        "lbfgs_minibatch",
        BASE.replace("name: sgd", "name: lbfgs").replace("epochs: 3", "epochs: 3\n  batch_size: 8"),
        (12, "train.batch_size"),
        r"^optimizer lbfgs takes full-batch steps in trainkit: the curvature pairs it keeps from step to step",
        r"--set train\.batch_size=full\), or for mini-batches optimizer adam \(--set optimizer\.name=adam\)$",
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
    "layer,key",
    [
        ("{name: conv2d, in_channels: 3, out_channels: 4, kernel_size: 3}", "in_channels"),
        ("{name: linear, in_features: 8}", "in_features"),
        ("{name: batch_norm1d, num_features: 8}", "num_features"),
    ],
)
def test_torch_arguments_trainkit_infers_say_so(layer, key):
    """A torch user writes in_channels / in_features / num_features: the hint says the input's
    shape gives them (it said "did you mean 'out_channels'?")."""
    issues = errors_of(BASE, [f"model={{name: sequential, layers: [{layer}, linear]}}"])
    assert [i.key for i in issues] == [f"model.layers[0].{key}"], [i.render() for i in issues]
    assert issues[0].hint == f"{key} comes from the input's shape (the data or the previous layer): remove it"


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


# ------------------------------------------------------------------ numbers are numbers (strict, finite)


def _config_with(path: tuple, value) -> str:
    """BASE with one key (a dotted path into the config) set to `value`, as YAML."""
    raw = yaml.safe_load(BASE)
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    node[path[-1]] = value
    return yaml.safe_dump(raw)


@pytest.mark.parametrize(
    "line,key,message",
    [
        ("train: {epochs: true}", "train.epochs", "valid integer, got true"),
        ("optimizer: {name: sgd, momentum: true}", "optimizer.momentum", "valid number, got true"),
        ("optimizer: {name: sgd, lr: .inf}", "optimizer.lr", "finite number, got inf"),
        ("optimizer: {name: sgd, lr: 1e400}", "optimizer.lr", "finite number, got inf"),
        ("optimizer: {name: sgd, lr: -.inf}", "optimizer.lr", "finite number, got -inf"),
        ("train: {batch_size: .nan}", "train.batch_size", "expected 'full' or an integer >= 1, got nan"),
        ("train: {epochs: 1:30}", "train.epochs", "valid integer, got '1:30'"),
        ("train: {epochs: 3.0}", "train.epochs", "valid integer, got 3.0"),
        ("train: {epochs: '5'}", "train.epochs", "valid integer, got '5'"),
        ("seed: 010", "seed", "valid integer, got '010'"),
        ("model: {name: mlp, hidden: [8, true]}", "model.hidden[1]", "valid integer, got true"),
        ("optimizer: {name: adam, betas: [0.9, .nan]}", "optimizer.betas[1]", "finite number, got nan"),
        ("regularization: {l2: true}", "regularization.l2", "valid number, got true"),
    ],
)
def test_booleans_and_infinities_are_not_numbers(line, key, message):
    text = "data: linear\nmodel: linear\noptimizer: sgd\n"
    section = line.split(":")[0]
    text = "\n".join(ln for ln in text.splitlines() if not ln.startswith(section + ":")) + "\n" + line + "\n"
    issues = errors_of(text)
    assert [(i.key, i.line) for i in issues] == [(key, text.splitlines().index(line) + 1)], [i.render() for i in issues]
    assert message in issues[0].message


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.epochs=true", "valid integer, got true"),
        ("optimizer.momentum=true", "valid number, got true"),
        ("optimizer.lr=.inf", "finite number, got inf"),
        ("optimizer.lr=1e400", "finite number, got inf"),
        ("train.batch_size=.nan", "expected 'full' or an integer >= 1, got nan"),
        ("train.epochs=1:30", "valid integer, got '1:30'"),
    ],
)
def test_booleans_and_infinities_are_not_numbers_in_overrides(override, message):
    (issue,) = errors_of(BASE, [override])
    assert issue.source == f"--set {override}" and message in issue.message


def _numeric_fields():
    """(kind, component, key) for every int or float field of every registered schema."""
    from trainkit import registry

    for kind in registry.KINDS:
        for e in registry.entries(kind):
            for name, f in e.schema.model_fields.items():
                text = str(f.annotation)
                if f.annotation in (int, float) or (("int" in text or "float" in text) and "bool" not in text):
                    yield kind, e.name, f.alias or name


_WHERE = {
    "optimizers": ("optimizer",),
    "models": ("model",),
    "datasets": ("data",),
    "losses": ("loss",),
    "schedules": ("schedule",),
    "layers": ("model", "layers", 0),
    "augmentations": ("data", "augment", 0),
}


@pytest.mark.parametrize("value", [True, float("inf"), float("nan")], ids=["true", "inf", "nan"])
def test_every_numeric_field_of_every_component_refuses_booleans_and_non_finite(value):
    """Strictness lives in the base class, so a field added tomorrow is covered too."""
    accepted = []
    for kind, name, key in _numeric_fields():
        block = {"name": name, key: value}
        where = _WHERE[kind]
        raw = yaml.safe_load(BASE)
        if where[0] == "model" and len(where) > 1:
            raw["model"] = {"name": "sequential", "layers": [block]}
        elif len(where) > 1:
            raw["data"]["augment"] = [block]
        else:
            raw[where[0]] = {**block, **({"layers": ["linear"]} if name == "sequential" else {})}
        with pytest.raises(ConfigError) as e:
            load_config_text(yaml.safe_dump(raw), "c.yaml")
            accepted.append(f"{kind} {name}.{key}")
            continue
        dotted = ".".join(str(p) for p in where).replace(".0", "[0]") + f".{key}"
        assert dotted in [i.key for i in e.value.issues], (dotted, e.value.render())
    assert not accepted, accepted


def test_yaml_numbers_read_as_yaml_1_2():
    from trainkit.config import parse_yaml

    data, _ = parse_yaml("a: 1e-3\nb: 1:30\nc: 010\nd: 1_000\ne: -2.5E+3\nf: 0x10\ng: 3.\nh: 2020-01-01x\n", "c")
    assert data == {"a": 0.001, "b": "1:30", "c": "010", "d": 1000, "e": -2500.0, "f": 16, "g": 3.0, "h": "2020-01-01x"}
    assert load_config_text(BASE, "c", ["optimizer.lr=1e-3"]).config.optimizer.lr == 0.001
    # a dot with no digit is text (it raised ValueError from float('.'): found by test_hardening)
    data, _ = parse_yaml("a: .\nb: -.\nc: ._\nd: .5\ne: 5.\n", "c")
    assert data == {"a": ".", "b": "-.", "c": "._", "d": 0.5, "e": 5.0}


def test_yaml_booleans_read_as_yaml_1_2():
    """YAML 1.1 turned `no` into False: an npz key or a class named `no` broke ("expected a
    string, got boolean"). Only true/false are booleans now; boolean keys still take yes/no."""
    from trainkit.config import parse_yaml

    data, _ = parse_yaml("a: yes\nb: no\nc: on\nd: off\ne: true\nf: False\n", "c")
    assert data == {"a": "yes", "b": "no", "c": "on", "d": "off", "e": True, "f": False}
    text = BASE.replace("  name: linear\n  n_samples: 40", "  name: npz\n  path: d.npz\n  y_key: no")
    assert load_config_text(text, "c").config.data.y_key == "no"
    assert load_config_text(BASE, "c", ["train.shuffle=no"]).config.train.shuffle is False
    assert load_config_text(BASE.replace("epochs: 3", "epochs: 3\n  shuffle: off"), "c").config.train.shuffle is False


def test_dumped_configs_keep_strings_that_look_like_numbers():
    from trainkit.config import dump_yaml, parse_yaml

    data = {"a": "1e-3", "b": "1:30", "c": "010", "d": 1e-05, "e": 90, "f": "yes"}
    assert parse_yaml(dump_yaml(data), "c")[0] == data
    assert yaml.safe_load(dump_yaml(data)) == data


# ------------------------------------------------------------------ YAML that is expensive or circular


def _run_bounded(code: str, seconds: int = 60):
    """Run `code` in a child process with 1 GB of address space, so that a regression
    (an alias bomb expanding to gigabytes) fails this test instead of the machine."""
    import resource
    import subprocess
    import sys

    from conftest import ROOT

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds, preexec_fn=limit, cwd=ROOT
    )


ALIAS_BOMB = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")).join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n", "data: linear\n"]
)


@pytest.mark.parametrize(
    "text,message",
    [
        (ALIAS_BOMB, "expands to more than 100000 values"),
        ("a: &x [1, *x]\n", "refers to a value that contains it"),
        ("a: &x {b: {c: *x}}\n", "refers to a value that contains it"),
        ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than 100 levels"),
        ("a: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "nested deeper than 100 levels"),
        ("".join(f"k{i}: &a{i} [{f'*a{i - 1}' if i else 1}]\n" for i in range(2000)), "nested deeper than 100"),
    ],
    ids=["alias_bomb", "self_alias", "self_alias_nested", "deep_lists", "deep_maps", "alias_chain"],
)
def test_hostile_yaml_is_refused_in_bounded_time_and_memory(tmp_path, text, message):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    code = (
        "import time; from trainkit.config import load_config; from trainkit.errors import ConfigError\n"
        f"t = time.perf_counter()\ntry:\n    load_config({str(p)!r})\nexcept ConfigError as e:\n"
        "    print(e.issues[0].message); print(time.perf_counter() - t)\n"
    )
    r = _run_bounded(code)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    out, seconds = r.stdout.splitlines()
    assert message in out and float(seconds) < 10


def test_merge_keys_follow_yaml():
    text = """\
    defaults: &sgd {name: sgd, lr: 0.1, momentum: 0.5}
    fast: &fast {lr: 0.9, nesterov: true}
    data: linear
    model: linear
    optimizer:
      <<: [*fast, *sgd]
      momentum: 0.9
    """
    from trainkit.config import parse_yaml

    data, smap = parse_yaml(textwrap.dedent(text), "c.yaml")
    # explicit keys win over merged ones; among merged mappings, the earlier one wins
    assert data["optimizer"] == {"name": "sgd", "lr": 0.9, "momentum": 0.9, "nesterov": True}
    assert smap.locate(("optimizer", "momentum"))[1] == 7  # the explicit key's line
    assert smap.locate(("optimizer", "lr"))[1] == 2  # where the merged value was written


def test_merge_key_override_is_no_duplicate_but_a_repeated_key_is():
    text = "base: &b {name: sgd, lr: 0.1}\noptimizer:\n  <<: *b\n  lr: 0.5\n"
    from trainkit.config import parse_yaml

    assert parse_yaml(text, "c")[0]["optimizer"] == {"name": "sgd", "lr": 0.5}
    issues = errors_of(text + "  lr: 0.7\n")
    assert [(i.line, i.key) for i in issues] == [(5, "optimizer.lr")] and "first set on line 4" in issues[0].message


# ------------------------------------------------------------------ size and echo caps


def test_config_size_is_capped(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 600_000)  # 6 MB of comments
    with pytest.raises(ConfigError, match="larger than 4 MB"):
        load_config(big)
    with pytest.raises(ConfigError, match="larger than 4 MB"):
        load_config_text("#" * (5 * 2**20), "c")


def test_dev_zero_as_config_is_refused_quickly():
    r = _run_bounded(
        "from trainkit.config import load_config\nfrom trainkit.errors import ConfigError\n"
        "try:\n    load_config('/dev/zero')\nexcept ConfigError as e:\n    print(e)\n",
        seconds=30,
    )
    assert r.returncode == 0 and "/dev/zero: larger than 4 MB" in r.stdout, r.stderr[-2000:]


@pytest.mark.parametrize(
    "text",
    [
        BASE.replace("name: sgd", "name: " + "x" * 5_000_000),
        BASE.replace("lr: 0.1", "lr: " + "x" * 5_000_000),
        BASE.replace("lr: 0.1", "x" * 1_000_000 + ": 1"),
        BASE.replace("epochs: 3", "dtype: [" + ", ".join(["1"] * 500_000) + "]"),
        BASE.replace("lr: 0.1", "lr: 0.1\n  momentum: {" + ", ".join(f"k{i}: 1" for i in range(200_000)) + "}"),
    ],
    ids=["name", "value", "key", "list", "mapping"],
)
def test_error_messages_cap_echoed_values(text):
    (issue,) = errors_of(text)
    assert len(issue.render()) < 600, issue.render()[:1000]


def test_override_errors_cap_echoed_values():
    (issue,) = errors_of(BASE, ["optimizer.lr=" + "x" * 1_000_000])
    assert len(issue.render()) < 600


# ------------------------------------------------------------------ messages: the override, no pydantic internals


@pytest.mark.parametrize(
    "override,key",
    [("seed.x=1", "seed"), ("train.epochs.a.b=1", "train.epochs"), ("optimizer.lr.x=2", "optimizer.lr")],
)
def test_override_under_a_scalar_names_the_override(override, key):
    (issue,) = errors_of(BASE.replace("seed: 0\n", ""), [override])
    assert (issue.source, issue.line, issue.key) == (f"--set {override}", None, key), issue.render()


def test_seed_and_output_dir_options_are_named_as_typed(cli, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: linear\nmodel: linear\noptimizer: sgd\n")
    r = cli("train", cfg, "--seed", "-1")
    assert r.code == 2 and "--seed -1: seed: input should be greater than or equal to 0" in r.stderr, r.stderr
    assert "--set" not in r.stderr
    r = cli("validate", cfg, "--set", "output.dir.x=1")
    assert r.code == 2 and "--set output.dir.x=1: output.dir" in r.stderr and "c.yaml" not in r.stderr


PYDANTIC_WORDS = re.compile(
    r"literal\[|constrained-|Input should|Extra inputs|InitFromFile|InitScheme|Config\b|function-|tagged-union"
    r"|union\[|list\[|tuple\[|dict\[|valid tuple|unable to|after validation|\bNone\b|\bTrue\b|\bFalse\b|<\w+"
    r"|PydanticUndefined|\[type=|errors\.pydantic"
)
BAD_VALUES = [True, float("inf"), float("nan"), "x", "", [1], [True], [[1]], {"a": 1}, -1, 0, 3.5, None, 10**30]


def _bad_configs():
    """A bad value at every key of every registered component and of every other section."""
    from trainkit import registry
    from trainkit.config.loader import settings

    for kind in registry.KINDS:
        where = _WHERE[kind]
        for e in registry.entries(kind):
            for name, f in e.schema.model_fields.items():
                yield where + (f.alias or name,), e.name
    for key, _ in settings():
        yield tuple(key.split(".")), None


def test_no_pydantic_internals_in_any_message():
    """Every key of every schema, a dozen bad values each: messages say what is allowed in
    trainkit's words, never pydantic's (`literal['full']`, `constrained-int`, class names)."""
    leaks = []
    for path, component in _bad_configs():
        for value in BAD_VALUES:
            raw = yaml.safe_load(BASE)
            if component is not None:
                block = {"name": component, path[-1]: value}
                if path[0] == "model" and len(path) > 2:
                    raw["model"] = {"name": "sequential", "layers": [block]}
                elif path[0] == "data" and len(path) > 2:
                    raw["data"]["augment"] = [block]
                else:
                    raw[path[0]] = {**block, **({"layers": ["linear"]} if component == "sequential" else {})}
            else:
                raw = yaml.safe_load(_config_with(path, value))
            try:
                load_config_text(yaml.safe_dump(raw), "c.yaml")
            except ConfigError as e:
                leaks += [i.render() for i in e.issues if PYDANTIC_WORDS.search(i.render())]
    assert not leaks, "\n".join(sorted(set(leaks))[:20])


@pytest.mark.parametrize(
    "override,key,message,hint",
    [
        ("train.batch_size=0", "train.batch_size", "expected 'full' or an integer >= 1, got 0", None),
        ("train.batch_size=fulll", "train.batch_size", "expected 'full' or an integer >= 1, got 'fulll'", "'full'"),
        ("compare.lr_grid=[0.1, -1]", "compare.lr_grid", "expected 'auto' or a list of numbers > 0", None),
        ("model.init={from: 3}", "model.init.from", "valid string, got 3", None),
        ("model.init={name: normal, std: -1}", "model.init.std", "greater than 0, got -1", None),
        ("model.init=xavier", "model.init.name", "expected 'default', 'xavier_uniform'", "xavier_"),
        ("train.dtype=float16", "train.dtype", "expected 'float32' or 'float64', got 'float16'", None),
        ("optimizer={name: adam, betas: [0.9]}", "optimizer.betas", "expected a list of 2 numbers, got [0.9]", None),
        ("optimizer.nesterov=maybe", "optimizer.nesterov", "input should be a valid boolean, got 'maybe'", None),
        ("model={name: sequential, layers: []}", "model.layers", "expected at least 1 item, got 0", None),
        # a Literal of strings and numbers names every value (pydantic's text quotes only the strings)
        ("model={name: cnn, dims: 3}", "model.dims", "expected 'auto', 1 or 2, got 3", None),
        ("model={name: cnn, dims: aut}", "model.dims", "expected 'auto', 1 or 2, got 'aut'", "'auto'"),
        # a string where a list belongs: the hint writes the list
        (
            "model={name: cnn, channels: '4, 8'}",
            "model.channels",
            "valid list, got '4, 8'",
            "YAML list, without quotes: [4, 8]",
        ),
        ("data.shape='[1, 8, 8]'", "data.shape", "valid list, got '[1, 8, 8]'", "without quotes: [1, 8, 8]"),
        ("model={name: cnn, hidden: 16}", "model.hidden", "valid list, got 16", "a list of one: [16]"),
    ],
)
def test_union_and_type_errors_say_what_is_allowed(override, key, message, hint):
    issues = errors_of(BASE, [override])
    assert [i.key for i in issues] == [key], [i.render() for i in issues]
    assert message in issues[0].message, issues[0].render()
    if hint:
        assert hint in (issues[0].hint or "")


def test_compare_optimizer_specs_use_the_same_wording():
    from trainkit.compare.runner import parse_spec

    with pytest.raises(ConfigError) as e:
        parse_spec("sgd momentum=true lr_x=3", "-o")
    text = e.value.render()
    assert "momentum: input should be a valid number, got true" in text and "did you mean 'lr'" in text
    assert not PYDANTIC_WORDS.search(text), text


# ------------------------------------------------------------------ one way to write a name-keyed block


def test_registry_is_not_called_at_import_time():
    import subprocess
    import sys

    from conftest import ROOT

    code = "import trainkit.nn.models, trainkit.registry as r; print(r._loaded)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_name_shorthand_and_name_keyed_unions_are_written_once():
    from conftest import ROOT

    sources = {p: p.read_text() for p in (ROOT / "trainkit").rglob("*.py")}
    shorthand = [p.name for p, s in sources.items() for _ in re.finditer(r'\{"name": \w+\} if isinstance', s)]
    discriminated = [p.name for p, s in sources.items() for _ in re.finditer(r'discriminator="name"', s)]
    assert shorthand == ["base.py"] and discriminated == ["base.py"], (shorthand, discriminated)


def test_name_shorthand_works_in_every_name_keyed_block():
    cfg = load_config_text(
        "data: {name: linear, augment: [gaussian_noise]}\n"
        "model: {name: sequential, layers: [{name: linear, out_features: 4}, relu, linear], init: xavier_uniform}\n"
        "optimizer: adam\nloss: mse\nschedule: {name: linear_warmup, warmup_epochs: 2, then: constant}\n",
        "c",
    ).config
    assert cfg.data.augment[0].name == "gaussian_noise" and cfg.model.layers[1].name == "relu"
    assert cfg.model.init.name == "xavier_uniform" and cfg.schedule.then.name == "constant"
    play = load_config_text("problem: rosenbrock\noptimizer: adam\n", "p", kind="any").config
    assert play.problem.name == "rosenbrock"


# ------------------------------------------------------------------ trainkit list


def test_list_shows_sections_with_defaults_and_playground_problems(cli):
    r = cli("list", "sections")
    assert r.code == 0
    for key, default in [("train.epochs", "100"), ("regularization.l2", "0.0"), ("output.dir", "None")]:
        assert re.search(rf"{re.escape(key)}\s.*{re.escape(default)}", r.stdout), r.stdout
    assert "'full' or an integer >= 1" in r.stdout and "compare.seeds" in r.stdout and "seed" in r.stdout
    r = cli("list", "problems")
    assert r.code == 0 and all(p in r.stdout for p in ("rosenbrock", "beale", "himmelblau", "saddle", "quadratic"))
    r = cli("list")
    assert "sections" in r.stdout and "problems" in r.stdout and "train.batch_size" in r.stdout


def test_list_keeps_brackets_in_descriptions(cli):
    r = cli("list", "models")
    assert "[linear, activation, (dropout)]" in " ".join(r.stdout.split()), r.stdout
    assert "hidden=[64]" in r.stdout


def test_invalid_yaml_in_an_override_says_its_column_in_words_not_as_a_file_position():
    issue = errors_of(BASE, ["train.epochs=[1"])[0]
    # `--set train.epochs=[1:1:3` would read as part of the value the user typed
    assert issue.where() == "--set train.epochs=[1" and issue.line is None
    assert "column 3 of the value" in issue.message
