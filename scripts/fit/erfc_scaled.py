"""Fits the polynomial behind VectorMath.normalCDF's erfc (dev-only; numpy + mpmath).

With a = |x|/sqrt(2) and t = 1/(1 + a/2):  erfc(a) = t * exp(-a^2) * Q(t),
Q(t) = erfc(a) e^(a^2) / t, smooth on t in [1/6, 1] (a in [0, 10]). Q is fitted directly
(not its logarithm, as Numerical Recipes' erfcc does) so that Phi and the normal density
share the one exponential exp(-a^2): GELU's backward then needs one exp, not two.
Least squares on Chebyshev nodes, relative weighting; prints the coefficients (highest
power first) and the fit's max relative error.
"""
import mpmath
import numpy as np

mpmath.mp.dps = 40
DEGREE = 8


def q_exact(t):
    a = 2 * (1 / t - 1)
    return mpmath.erfc(a) * mpmath.exp(a * a) / t


def main():
    lo, hi = 1 / 6, 1.0
    k = np.arange(4000)
    nodes = 0.5 * (lo + hi) + 0.5 * (hi - lo) * np.cos(np.pi * (k + 0.5) / len(k))
    target = np.array([float(q_exact(mpmath.mpf(t))) for t in nodes])
    # Relative weighting: scale each row by 1/target.
    vander = np.vander(nodes, DEGREE + 1) / target[:, None]
    coefficients, *_ = np.linalg.lstsq(vander, np.ones_like(target), rcond=None)
    check = np.linspace(lo, hi, 20001)
    exact = np.array([float(q_exact(mpmath.mpf(t))) for t in check])
    relative = np.max(np.abs(np.polyval(coefficients, check) / exact - 1))
    print("degree", DEGREE, "max relative error", relative)
    for c in coefficients:
        print(f"{c:.9e}")


if __name__ == "__main__":
    main()
