"""Every registered layer, loss, optimizer and schedule has an oracle test.

How it works: an oracle is a parametrised test; its parameter table has a `name` column (or a
`spec` dict with a name). This file reads the names out of each table and compares them with
`registry.names(kind)`. Register a component without a row in its oracle's table and the test
here fails, naming the table to add it to:

    layers      tests/test_gradients.py          LAYERS      backward vs central finite differences
    layers      tests/test_conv.py               LAYERS      the same, for conv/pool/norm layers
    losses      tests/test_gradients.py          LOSSES      backward vs central finite differences
    optimizers  tests/test_optimizers.py         CASES       the update rule written out again (torch's pseudocode)
    optimizers  tests/test_new_optimizers.py     TORCH_EXACT, REFERENCE  torch or the paper's reference code
    optimizers  tests/test_torch_equivalence.py  OPTIMIZERS  the same training run in torch (float64, 1e-10)
    schedules   tests/test_components.py         test_schedule_closed_forms' table: each rate's closed form
    schedules   tests/test_schedules_torch.py    CASES       torch's lr_scheduler, 120 steps

A component checked by a test of its own (not a table row) is listed in that oracle's
`by_hand` with the test that checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import test_components
import test_conv
import test_gradients
import test_new_optimizers
import test_optimizers
import test_schedules_torch

from trainkit import registry


def names_in_table(test) -> set[str]:
    """The component names in a parametrised test's table: its `name` column, or `spec["name"]`."""
    names = set()
    for mark in getattr(test, "pytestmark", []):
        if mark.name != "parametrize":
            continue
        columns = [c.strip() for c in mark.args[0].split(",")] if isinstance(mark.args[0], str) else list(mark.args[0])
        column = next((c for c in ("name", "spec") if c in columns), None)
        if column is None:
            continue
        i = columns.index(column)
        for row in mark.args[1]:
            if hasattr(row, "values"):  # a pytest.param(...) row
                value = row.values[i]
            else:
                value = row[i] if len(columns) > 1 else row
            names.add(value["name"] if isinstance(value, dict) else value)
    return names


@dataclass
class Oracle:
    kind: str
    test: object  # the parametrised test function
    where: str  # what a new component adds, and where
    by_hand: dict = field(default_factory=dict)  # name -> the separate test that checks it
    also: tuple = ()  # further parametrised oracles of the same kind (e.g. for newer components)

    def covered(self) -> set[str]:
        return set().union(*(names_in_table(t) for t in (self.test, *self.also))) | set(self.by_hand)

    def check(self) -> None:
        missing = sorted(set(registry.names(self.kind)) - self.covered())
        assert not missing, f"{self.kind} registered without an oracle: {', '.join(missing)}; add a row to {self.where}"


ORACLES = [
    Oracle(
        "layers",
        test_gradients.test_layer_backward_matches_finite_differences,
        "LAYERS in tests/test_gradients.py, or in tests/test_conv.py for layers on (C, L)/(C, H, W) "
        "samples (backward vs central finite differences)",
        also=(test_conv.test_layer_backward_matches_finite_differences,),
    ),
    Oracle(
        "losses",
        test_gradients.test_loss_backward_matches_finite_differences,
        "LOSSES in tests/test_gradients.py (backward vs central finite differences)",
    ),
    Oracle(
        "optimizers",
        test_optimizers.test_update_rule_matches_published_pseudocode,
        "CASES in tests/test_optimizers.py (a reference implementation of the update rule), or TORCH_EXACT/"
        "REFERENCE in tests/test_new_optimizers.py (torch or the paper's reference package over 210 steps)",
        also=(test_new_optimizers.test_same_parameters_as_torch_or_reference,),
    ),
    Oracle(
        "schedules",
        test_components.test_schedule_closed_forms,
        "the table of test_schedule_closed_forms in tests/test_components.py (the rate's closed form)",
        by_hand={"reduce_on_plateau": test_components.test_reduce_on_plateau_follows_torch_rules},
        also=(test_schedules_torch.test_rates_equal_torch,),
    ),
]


@pytest.mark.parametrize("oracle", ORACLES, ids=lambda o: f"{o.kind}-{o.test.__name__}")
def test_every_registered_component_has_an_oracle(oracle):
    oracle.check()


def test_every_optimizer_has_a_torch_oracle():
    # Skipped with `make test` when torch is missing; `make test-all` installs it and fails
    # instead of skipping (see `require` in conftest.py).
    import test_torch_equivalence as te

    Oracle(
        "optimizers",
        te.test_same_parameters_as_torch,
        "OPTIMIZERS in tests/test_torch_equivalence.py, or to NOT_IN_TORCH there with the reason",
        by_hand={"gd": te.test_logistic_bce_matches_torch, **te.NOT_IN_TORCH},
        also=(test_new_optimizers.test_same_parameters_as_torch_or_reference,),
    ).check()


def test_a_component_without_an_oracle_is_named():
    """The check itself can fail: a registered name missing from the table is reported."""
    real = next(o for o in ORACLES if o.kind == "optimizers")
    oracle = Oracle("optimizers", real.test, "CASES", also=real.also)
    covered = oracle.covered()
    assert "radam" in covered
    oracle.covered = lambda: covered - {"radam"}
    with pytest.raises(AssertionError, match="optimizers registered without an oracle: radam; add a row to CASES"):
        oracle.check()


def test_names_are_read_from_every_form_of_table():
    @pytest.mark.parametrize(["spec", "x"], [({"name": "step"}, 1), pytest.param({"name": "cosine"}, 2, id="c")])
    @pytest.mark.parametrize("name", ["adam", pytest.param("sgd", marks=pytest.mark.xfail)])
    @pytest.mark.parametrize("shape", [(1, 1)])
    def oracle(spec, x, name, shape): ...

    assert names_in_table(oracle) == {"step", "cosine", "adam", "sgd"}
