#!/usr/bin/env python3
"""Reference values for wor_test.go: the sampling-without-replacement RDP bound of
Wang, Balle and Kasiviswanathan (2019), Theorem 27 of arXiv 1808.00087v2, for the
Gaussian mechanism (RDP eps(a) = a/(2 sigma^2)), evaluated directly in 400-digit
arithmetic (mpmath): no log-space tricks, so the forward differences cannot cancel.
Orders above 256 drop the forward-difference arm of each minimum, as TensorFlow
Privacy does. Run: python3 wor_reference.py (needs mpmath)."""
from mpmath import mp, mpf, binomial, exp, log, sqrt, floor, ceil

mp.dps = 400


def log_a(gamma, sigma, alpha):
    gamma, sigma = mpf(gamma), mpf(sigma)
    eps = lambda a: a / (2 * sigma**2)
    f = lambda i: exp((i - 1) * eps(i))  # e^((i-1) eps(i))

    def B(l):  # l-th forward difference of f at 0
        return sum((-1) ** (l - i) * binomial(l, i) * f(i) for i in range(l + 1))

    a = 1 + gamma**2 * binomial(alpha, 2) * min(4 * (exp(eps(2)) - 1), 2 * exp(eps(2)))
    for j in range(3, alpha + 1):
        t = 2 * f(j)
        if alpha <= 256:
            t = min(t, 4 * sqrt(B(2 * (j // 2)) * B(2 * ((j + 1) // 2))))
        a += gamma**j * binomial(alpha, j) * t
    return log(a)


def rdp(gamma, sigma, alpha):
    if float(alpha).is_integer():
        return log_a(gamma, sigma, int(alpha)) / (alpha - 1)
    lo, hi = int(floor(alpha)), int(ceil(alpha))
    t = mpf(alpha) - lo
    x = log_a(gamma, sigma, lo) if lo > 1 else 0
    return ((1 - t) * x + t * log_a(gamma, sigma, hi)) / (mpf(alpha) - 1)


CASES = [
    (0.01, 2.5, 2), (0.01, 2.5, 3), (0.01, 2.5, 5), (0.01, 2.5, 2.5), (0.01, 2.5, 50),
    (0.1, 0.5, 2), (0.1, 0.5, 7), (0.1, 0.5, 32), (0.1, 0.5, 10.4),
    (0.3, 1.0, 12), (0.05, 4.0, 20), (0.001, 10.0, 63), (0.5, 0.8, 9),
    (0.2, 30.0, 40), (0.5, 1000.0, 64), (0.01, 2.5, 100), (0.01, 2.5, 256),
]

if __name__ == "__main__":
    for g, s, a in CASES:
        print("{%r, %r, %r, %s}," % (g, s, a, mp.nstr(rdp(g, s, a), 17)))
