"""Per-tensor views of the flat parameter and gradient buffers.

Most update rules act element by element, so the flat buffers are all they need. A few act on
each tensor as a whole (Muon orthogonalises 2-D weights, Adafactor factors their second moment,
LAMB scales each tensor's step by a trust ratio): those set `uses_shapes = True` and receive the
tensors' shapes, in the order the network lays them out in the buffer. Without shapes (the
playground's point, a bare vector) the whole buffer is one 1-D tensor.
"""

from __future__ import annotations

import math

from trainkit import registry


def tensor_slices(shapes: dict[str, tuple[int, ...]] | None, size: int) -> dict[str, tuple[slice, tuple]]:
    """name -> (slice of the flat buffer, shape); the tensors lie back to back."""
    if not shapes:
        return {"": (slice(0, size), (size,))}
    out, offset = {}, 0
    for name, shape in shapes.items():
        n = math.prod(shape)
        out[name] = (slice(offset, offset + n), tuple(shape))
        offset += n
    if offset != size:
        raise ValueError(f"shapes cover {offset} of {size} parameters")
    return out


def tensor_views(flat, shapes: dict[str, tuple[int, ...]] | None) -> dict[str, object]:
    """name -> view of `flat` with that tensor's shape."""
    return {k: flat[sl].reshape(shape) for k, (sl, shape) in tensor_slices(shapes, flat.size).items()}


def build_optimizer(cfg, params, grads, shapes: dict[str, tuple[int, ...]] | None = None):
    """The optimizer `cfg.name` selects, over the flat buffers; `shapes` go to the rules that use them."""
    build = registry.get("optimizers", cfg.name).build
    if getattr(build, "uses_shapes", False):
        return build(cfg, params, grads, shapes=shapes)
    return build(cfg, params, grads)
