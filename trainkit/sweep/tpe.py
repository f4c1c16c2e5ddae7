"""`method: tpe`: points chosen by Optuna's TPE sampler from the results so far, in batches of
--jobs points. The study lives in `optuna.journal` in the sweep dir (Optuna's journal file
storage: appends, safe for several processes; never a shared SQLite file).

Point n of the sweep is Optuna trial n. Each batch asks with a sampler seeded by the sweep's
seed and the batch's first point, so the points depend only on the results told before them:
a rerun with the same --jobs, or a resumed sweep, asks the same points.
"""

from __future__ import annotations

import json
from pathlib import Path

from trainkit.errors import TrainkitError
from trainkit.sweep.spec import SweepSpec


class OptunaMissing(TrainkitError):
    kind = "optuna"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise OptunaMissing(
            "method tpe needs Optuna\n    help: pip install 'trainkit[optuna]', or use method random"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def distributions(spec: SweepSpec) -> dict:
    d = _optuna().distributions
    out = {}
    for k, p in spec.parameters.items():
        if p.values is not None:  # Optuna's choices are scalars: lists go as their JSON text
            out[k] = d.CategoricalDistribution([json.dumps(v) for v in p.values])
        elif p.distribution == "int_uniform":
            out[k] = d.IntDistribution(int(p.min), int(p.max))
        else:
            out[k] = d.FloatDistribution(p.min, p.max, log=p.distribution == "log_uniform")
    return out


class Tpe:
    def __init__(self, spec: SweepSpec, out: Path):
        optuna = _optuna()
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        self.spec, self.optuna = spec, optuna
        self.storage = JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
        self.dists = distributions(spec)
        self.direction = spec.metric.goal
        optuna.create_study(storage=self.storage, study_name="sweep", direction=self.direction, load_if_exists=True)

    def _study(self, seed: int):
        sampler = self.optuna.samplers.TPESampler(seed=seed)
        return self.optuna.load_study(study_name="sweep", storage=self.storage, sampler=sampler)

    def points(self, start: int, n: int) -> list[dict]:
        """Points start .. start+n-1: those already asked (a resumed sweep), then new asks."""
        study = self._study(self.spec.seed * 1_000_003 + start)
        known = {t.number: t for t in study.get_trials(deepcopy=False)}
        out = []
        for number in range(start, start + n):
            t = known.get(number) or study.ask(self.dists)
            assert t.number == number, (t.number, number)  # asks are in order, one study per sweep
            out.append({k: self._value(k, t.params[k]) for k in self.dists})
        return out

    def _value(self, key: str, v):
        return json.loads(v) if self.spec.parameters[key].values is not None else v

    def tell(self, number: int, value: float | None) -> None:
        study = self._study(0)
        trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
        if trial.state.is_finished():
            return
        state = self.optuna.trial.TrialState
        if value is None:
            study.tell(number, state=state.FAIL)
        else:
            study.tell(number, value)
