"""trainkit: train models from YAML configs on a numpy engine with hand-written backprop.

The Python API mirrors the CLI::

    import trainkit
    cfg = trainkit.load_config("configs/linreg.yaml", overrides=["optimizer.lr=0.3"])
    result = trainkit.train(cfg)
    result.params["weight"], result.metrics["train_loss"]

Heavy modules (numpy, pydantic) load on first use so that `trainkit --help` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load_config", "train", "ConfigError", "DataError", "__version__"]


def __getattr__(name: str):
    if name in ("load_config", "train"):
        from trainkit import api

        return getattr(api, name)
    if name in ("ConfigError", "DataError"):
        from trainkit import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'trainkit' has no attribute {name!r}")
