"""Parameter initialisation schemes for a linear layer's weight (out, in) and bias (out,).

`default` matches torch.nn.Linear: W, b ~ U(-1/sqrt(in), 1/sqrt(in)). The named schemes
initialise the weight as torch.nn.init does and set the bias to zero. Values are drawn in
float64 and then cast, so float32 and float64 runs start from the same numbers.
"""

from __future__ import annotations

import math

import numpy as np


def init_linear(scheme, out_f: int, in_f: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    name = scheme.name
    if name == "default":
        bound = 1.0 / math.sqrt(in_f) if in_f else 0.0
        return rng.uniform(-bound, bound, (out_f, in_f)), rng.uniform(-bound, bound, out_f)
    if name == "xavier_uniform":  # a = gain * sqrt(6 / (fan_in + fan_out))
        a = scheme.gain * math.sqrt(6.0 / (in_f + out_f))
        w = rng.uniform(-a, a, (out_f, in_f))
    elif name == "xavier_normal":  # std = gain * sqrt(2 / (fan_in + fan_out))
        w = rng.normal(0.0, scheme.gain * math.sqrt(2.0 / (in_f + out_f)), (out_f, in_f))
    elif name == "kaiming_uniform":  # bound = sqrt(6 / fan_in), for ReLU
        b = math.sqrt(6.0 / in_f)
        w = rng.uniform(-b, b, (out_f, in_f))
    elif name == "kaiming_normal":  # std = sqrt(2 / fan_in), for ReLU
        w = rng.normal(0.0, math.sqrt(2.0 / in_f), (out_f, in_f))
    elif name == "normal":
        w = rng.normal(0.0, scheme.std, (out_f, in_f))
    elif name == "zeros":
        w = np.zeros((out_f, in_f))
    else:  # pragma: no cover - the schema admits only the names above
        raise ValueError(name)
    return w, np.zeros(out_f)
