

ASHA = """
seed: 0
data: {name: moons, n_samples: 300, noise: 0.25, val_fraction: 0.25}
model: {name: mlp, hidden: [8], activation: tanh}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 9, batch_size: 32}
sweep:
  method: random
  num_samples: 9
  seed: 3
  metric: {name: val_loss, goal: minimize}
  parameters:
    optimizer.lr: {distribution: log_uniform, min: 1.0e-4, max: 0.3}
"""


def test_asha_halves_rung_by_rung_and_a_survivor_ends_as_in_a_full_run(tmp_path):
    full = runner.sweep(write(tmp_path, ASHA), output_dir=tmp_path / "full")
    spec = write(tmp_path, ASHA + "  early_terminate: {type: asha, min_epochs: 1, eta: 3}\n", "asha.yaml")
    sw = runner.sweep(spec, output_dir=tmp_path / "asha")
    assert runner.rungs(sw.spec, 9) == [1, 3, 9]
    statuses = sorted(r["status"] for r in sw.rows.values())
    assert statuses == ["completed"] + ["pruned"] * 8
    assert sorted(r["epochs"] for r in sw.rows.values()) == [1] * 6 + [3] * 2 + [9]
    assert sum(r["epochs"] for r in sw.rows.values()) == 6 + 6 + 9  # of 81 for the full search
    # the survivor went 1 -> 3 -> 9 epochs through its checkpoint: it ends where a full run ends
    winner = runner.ranking(sw)[0]
    assert winner["complete"]
    assert winner["mean"] == full.rows[winner["trials"][0]]["final"]
    # the promoted points were the best of their rung
    rung0 = sorted((r["final"], t) for (t, k), r in sw.rung_rows.items() if k == 0)
    assert {t for _, t in rung0[:3]} == {t for (t, k) in sw.rung_rows if k == 1}
