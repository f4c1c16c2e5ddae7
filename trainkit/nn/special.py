"""erf and erfc in whole-array operations, for the exact GELU.

W. J. Cody's rational Chebyshev approximations ("Rational Chebyshev approximations for the
error function", Math. Comp. 23, 1969; netlib specfun CALERF), in three ranges of a = |x|:

    a < 0.46875:       erf(x)  = x · P₁(x²) / Q₁(x²)
    0.46875 ≤ a < 4:   erfc(a) = e^(−a²) · P₂(a) / Q₂(a)
    a ≥ 4:             erfc(a) = e^(−a²) / a · (1/√π − z·P₃(z) / Q₃(z)),  z = 1/a²

and erfc(−a) = 2 − erfc(a). e^(−a²) is taken as e^(−s²)·e^(−(a−s)(a+s)) with s = a rounded
down to 1/16, so that rounding a² does not cost the tail its relative accuracy. Relative
error is a few units in the last place in float64. Every element goes through each range's
formula (on its argument clipped into that range) and xp.where keeps the one for its own
range: plain array operations, numpy's and CuPy's alike.
"""

from __future__ import annotations

from trainkit.backend import xp

_SMALL, _LARGE = 0.46875, 4.0
_INV_SQRT_PI = 5.6418958354775628695e-1
_LIMIT = {4: 9.194549, 8: 26.54325845}  # by itemsize: the largest a whose erfc is a normal number
_A = (
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_C = (
    5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02,
    8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03,
    2.15311535474403846e-8,
)  # fmt: skip
_D = (
    1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03,
    3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03,
)  # fmt: skip
_P = (
    3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
    6.58749161529837803e-4, 1.63153871373020978e-2,
)  # fmt: skip
_Q = (
    2.56852019228982242e00,
    1.87295284992346725e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)


def _ratio(num, den, t, n: int):
    """Cody's nested form: (((c_n+1·t + c₀)t + c₁)t … + c_n) / ((((t + d₀)t + d₁)t … + d_n)),
    in place on two work arrays (allocating a temporary per term would double the cost)."""
    p, q = t * num[-1], t.copy()
    for i in range(n):
        p += num[i]
        p *= t
        q += den[i]
        q *= t
    p += num[n]
    q += den[n]
    p /= q
    return p


def _erfc_nonneg(a):
    """erfc(a) for a ≥ 0.46875 (smaller a give finite values that callers discard)."""
    # Beyond `limit` erfc is subnormal, which x86 computes ~100x slower: flush it to 0, as
    # Cody's XBIG does. Both ranges share e^(−a²); each range's ratio sees its argument
    # clipped into its range, so nothing overflows and no masked gathers are needed.
    limit = _LIMIT.get(a.dtype.itemsize, 26.54325845)
    ac = xp.minimum(a, limit)
    s = xp.floor(ac * 16.0)
    s /= 16.0
    d = ac - s
    d *= ac + s
    s *= s
    e = xp.exp(-s)
    e *= xp.exp(-d)
    r = _ratio(_C, _D, xp.clip(ac, _SMALL, _LARGE), 7)
    in_tail = ac >= _LARGE
    if bool(in_tail.any()):  # rare in activations: skip a third of the work when empty
        at = xp.maximum(ac, _LARGE)
        z = at * at
        xp.reciprocal(z, out=z)
        tail = _ratio(_P, _Q, z, 4)
        tail *= -z
        tail += _INV_SQRT_PI
        tail /= at
        xp.copyto(r, tail, where=in_tail)
        xp.copyto(e, 0.0, where=a > limit)
    r *= e
    return r


def _erf_small(x):
    """erf(x) for |x| < 0.46875 (larger x are clipped: their values are discarded)."""
    x = xp.clip(x, -_SMALL, _SMALL)
    r = _ratio(_A, _B, x * x, 3)
    r *= x
    return r


def _as_float_array(x):
    x = xp.asarray(x)
    return (x if x.dtype.kind == "f" else x.astype(xp.float64)).reshape(-1), x.shape


def erf(x):
    """erf(x) = 2/√π ∫₀ˣ e^(−t²) dt, elementwise."""
    x, shape = _as_float_array(x)
    a = xp.abs(x)
    out = _erfc_nonneg(a)
    xp.subtract(1.0, out, out=out)
    xp.copysign(out, x, out=out)
    xp.copyto(out, _erf_small(x), where=a < _SMALL)
    return out.reshape(shape)


def erfc(x):
    """erfc(x) = 1 − erf(x), elementwise, accurate relative to itself in both tails."""
    x, shape = _as_float_array(x)
    a = xp.abs(x)
    out = _erfc_nonneg(a)
    xp.subtract(2.0, out, out=out, where=x < 0)
    small = _erf_small(x)
    xp.subtract(1.0, small, out=small)
    xp.copyto(out, small, where=a < _SMALL)
    return out.reshape(shape)
