"""Tests for hull_cache: exact comparison against a brute-force scan."""

import os
import random
import sys
import time
from fractions import Fraction

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import hull_cache  # noqa: E402
from hull_cache import HardmaxHull, StaticHull, SumHead  # noqa: E402


# ----------------------------------------------------------------------------
# brute force reference
# ----------------------------------------------------------------------------
def _ex(x):
    x = float(x)
    return int(x) if x.is_integer() else Fraction(x)


def _round_mean(vals):
    s = sum(_ex(v) for v in vals)
    if s == 0:
        allneg = all(v == 0.0 and np.copysign(1.0, v) < 0 for v in vals)
        return -0.0 if allneg else 0.0
    return float(Fraction(s) / len(vals))


def tie_set(keys, q):
    """Indices of all keys with exactly maximal score q.k."""
    q0, q1 = _ex(q[0]), _ex(q[1])
    scores = [q0 * _ex(k0) + q1 * _ex(k1) for k0, k1 in keys]
    best = max(scores)
    return [j for j, s in enumerate(scores) if s == best]


def brute(keys, vals, q, mode, T=None):
    if not keys:
        return (0.0, 0.0)
    if T is None:
        T = tie_set(keys, q)
    if mode == "latest":
        return tuple(vals[max(T)])
    return (_round_mean([vals[j][0] for j in T]), _round_mean([vals[j][1] for j in T]))


def same(a, b):
    """Bit-for-bit equality of two float pairs."""
    return all(np.float64(x).tobytes() == np.float64(y).tobytes() for x, y in zip(a, b))


def check(h, keys, vals, q, mode, numpy_too=False):
    T = tie_set(keys, q) if keys else []
    exp = brute(keys, vals, q, mode, T)
    got = h.query(*q)
    assert same(got, exp), (q, got, exp, T, len(keys))
    if numpy_too and mode == "mean" and keys:
        # numpy's V[idx].mean(axis=0) is identical when its running sum is exact
        npv = np.asarray(vals, dtype=np.float64)[T].mean(axis=0)
        assert same(got, (float(npv[0]), float(npv[1]))), (q, got, npv)


@pytest.fixture(params=[512, 2], ids=["load512", "load2"])
def load(request, monkeypatch):
    """Run with the real block size and with tiny blocks (multi-block paths)."""
    monkeypatch.setattr(hull_cache, "_LOAD", request.param)
    return request.param


def perp_queries(rng, keys, k=2):
    """Queries exactly perpendicular to the segment between two random keys."""
    out = []
    for _ in range(k):
        (a0, a1), (b0, b1) = rng.choice(keys), rng.choice(keys)
        d0, d1 = b0 - a0, b1 - a1
        out.append((-d1, d0))
        out.append((d1, -d0))
    return out


def run_interleaved(rng, gen_key, gen_query, n, mode, n_q=3, int_vals=True, perp=True):
    h = HardmaxHull(mode)
    keys, vals = [], []
    check(h, keys, vals, (1.0, 2.0), mode)
    for _ in range(n):
        k = gen_key()
        v = (float(rng.randint(-5, 5)), float(rng.randint(-5, 5))) if int_vals else (
            rng.uniform(-1, 1), rng.choice([-0.0, 0.0, rng.uniform(-1e3, 1e3)]))
        h.insert(float(k[0]), float(k[1]), v[0], v[1])
        keys.append((float(k[0]), float(k[1])))
        vals.append(v)
        assert len(h) == len(keys)
        qs = [gen_query() for _ in range(n_q)] + [(0.0, 0.0)]
        if perp:
            qs += perp_queries(rng, keys, 1)
        for q in qs:
            check(h, keys, vals, (float(q[0]), float(q[1])), mode, numpy_too=int_vals)
    return h, keys


MODES = ["latest", "mean"]


# ----------------------------------------------------------------------------
# random point sets
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_small_range_random(mode, load):
    rng = random.Random(1 if mode == "latest" else 2)
    for trial in range(250):
        r = rng.choice([1, 2, 3, 5])
        n = rng.randint(1, 40)
        gk = lambda: (rng.randint(-r, r), rng.randint(-r, r))
        gq = lambda: (rng.randint(-3, 3), rng.randint(-3, 3))
        run_interleaved(rng, gk, gq, n, mode, int_vals=(trial % 3 != 0))


@pytest.mark.parametrize("mode", MODES)
def test_large_coordinates(mode, load):
    rng = random.Random(3)
    B = 1 << 40
    for trial in range(120):
        n = rng.randint(1, 40)
        if trial % 2:
            # points on a few big lines through big anchors -> exact collinearity
            anchors = [(rng.randint(-B, B), rng.randint(-B, B)) for _ in range(2)]
            dirs = [(rng.randint(-B >> 8, B >> 8), rng.randint(-B >> 8, B >> 8)) for _ in range(2)]

            def gk():
                a, d, t = rng.choice(anchors), rng.choice(dirs), rng.randint(-4, 4)
                return (a[0] + t * d[0], a[1] + t * d[1])
        else:
            gk = lambda: (rng.randint(-B, B), rng.randint(-B, B))
        gq = lambda: (rng.randint(-B, B), rng.randint(-B, B))
        run_interleaved(rng, gk, gq, n, mode)


def test_float_products_would_be_wrong():
    # scores that differ exactly but are equal after float64 rounding
    a = float(2**27 + 1)  # a*a = 2^54 + 2^28 + 1 is not a float64
    b = float(2**54 + 2**28)  # = a*a - 1 exactly; fl(a*a) == b
    assert a * a == b
    for mode, exp in [("latest", (3.0, 0.0)), ("mean", (2.0, 0.0))]:
        h = HardmaxHull(mode)
        h.insert(a, 0.0, 1.0, 0.0)  # score a^2 (winner)
        h.insert(0.0, b, 2.0, 0.0)  # score a^2 - 1
        assert h.query(a, 1.0) == (1.0, 0.0)
        h.insert(a, 0.0, 3.0, 0.0)  # exact duplicate of the winner
        assert h.query(a, 1.0) == exp
        h.insert(0.0, b + 4.0, 5.0, 0.0)  # score a^2 + 3: new winner
        assert h.query(a, 1.0) == (5.0, 0.0)


@pytest.mark.parametrize("mode", MODES)
def test_dyadic_keys_and_queries(mode, load):
    rng = random.Random(4)
    for trial in range(100):
        n = rng.randint(1, 30)
        gk = lambda: (rng.randint(-8, 8) / 2 ** rng.randint(0, 3) * 2.0 ** rng.choice([0, -20, 30]),
                      rng.randint(-8, 8) / 2 ** rng.randint(0, 3))
        gq = lambda: (rng.randint(-8, 8) / 2 ** rng.randint(0, 5), rng.randint(-8, 8) / 2 ** rng.randint(0, 60))
        run_interleaved(rng, gk, gq, n, mode, int_vals=(trial % 2 == 0))


# ----------------------------------------------------------------------------
# parabolic keys (2a, -a^2): the standard "lookup by position" pattern
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_parabolic_random_order(mode, load):
    rng = random.Random(5)
    for trial in range(60):
        m = rng.randint(1, 30)
        a_vals = [rng.randint(-20, 20) for _ in range(m)]
        a_vals += [rng.choice(a_vals) for _ in range(m // 3)]  # repeated a's
        rng.shuffle(a_vals)
        h = HardmaxHull(mode)
        keys, vals = [], []
        for a in a_vals:
            k = (2.0 * a, -float(a * a))
            v = (float(a), float(rng.randint(0, 9)))
            h.insert(*k, *v)
            keys.append(k)
            vals.append(v)
            # x = a' (exact hit), x not a key, x = midpoint (tie between two a's)
            for x in [rng.choice(a_vals), rng.randint(-25, 25), rng.randint(-50, 50) / 2, rng.uniform(-30, 30)]:
                check(h, keys, vals, (float(x), 1.0), mode, numpy_too=True)
                check(h, keys, vals, (float(x), -1.0), mode, numpy_too=True)
            check(h, keys, vals, (1.0, 0.0), mode, numpy_too=True)
            check(h, keys, vals, (-1.0, 0.0), mode, numpy_too=True)
            check(h, keys, vals, (0.0, 0.0), mode, numpy_too=True)
        # the winner for an exact hit is the key itself (latest duplicate)
        if mode == "latest":
            for a in set(a_vals):
                last = max(j for j, aa in enumerate(a_vals) if aa == a)
                assert h.query_index(float(a), 1.0) == last


def test_parabolic_large_positions():
    rng = random.Random(6)
    a_vals = rng.sample(range(1 << 24), 2000) + [rng.randrange(1 << 24) for _ in range(200)]
    rng.shuffle(a_vals)
    h = HardmaxHull()
    last = {}
    for j, a in enumerate(a_vals):
        h.insert(2.0 * a, -float(a) * a, float(j), 0.0)  # a^2 < 2^48, exact
        last[a] = j
    for a in rng.sample(a_vals, 300):
        assert h.query(float(a), 1.0) == (float(last[a]), 0.0)
    assert h.hull_size()[0] == len(last)


# ----------------------------------------------------------------------------
# degenerate configurations
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_collinear_sets(mode, load):
    rng = random.Random(7)
    for trial in range(150):
        kind = trial % 4
        if kind == 0:
            d = (0, 1)  # vertical line
        elif kind == 1:
            d = (1, 0)  # horizontal line
        else:
            d = (rng.randint(-3, 3), rng.randint(-3, 3))
        o = (rng.randint(-5, 5), rng.randint(-5, 5))
        n = rng.randint(1, 30)
        gk = lambda: (o[0] + d[0] * rng.randint(-6, 6), o[1] + d[1] * rng.randint(-6, 6))
        gq = lambda: rng.choice([(-d[1], d[0]), (d[1], -d[0]), (d[0], d[1]), (-d[0], -d[1]),
                                 (rng.randint(-3, 3), rng.randint(-3, 3))])
        run_interleaved(rng, gk, gq, n, mode, int_vals=(trial % 2 == 0))


@pytest.mark.parametrize("mode", MODES)
def test_identical_keys(mode, load):
    rng = random.Random(8)
    for trial in range(40):
        k = (rng.randint(-3, 3), rng.randint(-3, 3))
        gq = lambda: (rng.randint(-2, 2), rng.randint(-2, 2))
        run_interleaved(rng, lambda: k, gq, rng.randint(1, 25), mode, int_vals=(trial % 2 == 0))


@pytest.mark.parametrize("mode", MODES)
def test_grid_with_all_directions(mode, load):
    """Dense small grid, every query direction from a small set: lots of ties."""
    rng = random.Random(9)
    dirs = [(a, b) for a in range(-3, 4) for b in range(-3, 4)]
    for trial in range(40):
        pts = [(x, y) for x in range(-2, 3) for y in range(-2, 3) if rng.random() < 0.6]
        pts = pts * rng.randint(1, 2)
        rng.shuffle(pts)
        h = HardmaxHull(mode)
        keys, vals = [], []
        for p in pts:
            v = (float(rng.randint(-4, 4)), float(rng.randint(-4, 4)))
            h.insert(float(p[0]), float(p[1]), *v)
            keys.append((float(p[0]), float(p[1])))
            vals.append(v)
            for q in dirs:
                check(h, keys, vals, (float(q[0]), float(q[1])), mode, numpy_too=True)


def test_empty_and_zero_query():
    for mode in MODES:
        h = HardmaxHull(mode)
        assert h.query(0.0, 0.0) == (0.0, 0.0)
        assert h.query(1.0, -1.0) == (0.0, 0.0)
        assert len(h) == 0
    h = HardmaxHull("mean")
    h.insert(1.0, 1.0, -0.0, 1.0)
    h.insert(5.0, 1.0, -0.0, 2.0)
    assert same(h.query(0.0, 0.0), (-0.0, 1.5))
    assert same(h.query(0.0, 1.0), (-0.0, 1.5))
    h.insert(5.0, 1.0, 0.0, 2.0)
    assert same(h.query(1.0, 0.0), (0.0, 2.0))
    with pytest.raises(ValueError):
        HardmaxHull("max")


def test_mean_fraction_values_exact():
    # non-integer values: exact mean, correctly rounded
    h = HardmaxHull("mean")
    vals = [0.1, 0.2, 0.3, 1e16, -1e16, 3.0]
    for v in vals:
        h.insert(1.0, 2.0, v, 1.0)
    exp = float(sum(Fraction(v) for v in vals) / len(vals))
    assert h.query(3.0, -1.0) == (exp, 1.0)
    # large integers: exact sum 2^53 + 1 is not a float64; exact mean is
    h = HardmaxHull("mean")
    h.insert(0.0, 0.0, 2.0**53, 0.0)
    h.insert(0.0, 0.0, 1.0, 0.0)
    assert h.query(0.0, 1.0) == (2.0**52 + 0.5, 0.0)


# ----------------------------------------------------------------------------
# static hull (cross attention over a fixed memory)
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_static_hull(mode, load):
    rng = random.Random(10)
    for trial in range(150):
        r = rng.choice([1, 2, 4, 1 << 40])
        n = rng.randint(0, 40)
        if trial % 5 == 0:
            keys = [(2.0 * a, -float(a * a)) for a in (rng.randint(-10, 10) for _ in range(n))]
        else:
            keys = [(float(rng.randint(-r, r)), float(rng.randint(-r, r))) for _ in range(n)]
        vals = [(float(rng.randint(-5, 5)), float(rng.randint(-5, 5))) for _ in range(n)]
        h = StaticHull.from_points(keys, vals, mode)
        assert len(h) == n
        qs = [(rng.randint(-3, 3), rng.randint(-3, 3)) for _ in range(15)] + [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
        if keys:
            qs += perp_queries(rng, keys, 4)
        for q in qs:
            check(h, keys, vals, (float(q[0]), float(q[1])), mode, numpy_too=True)


def test_static_matches_dynamic_numpy_input():
    rng = np.random.default_rng(11)
    K = rng.integers(-50, 50, size=(500, 2)).astype(np.float64)
    V = rng.normal(size=(500, 2))
    s = StaticHull.from_points(K, V)
    d = HardmaxHull()
    for k, v in zip(K, V):
        d.insert(float(k[0]), float(k[1]), float(v[0]), float(v[1]))
    for q in rng.integers(-5, 5, size=(300, 2)).astype(np.float64):
        assert s.query(q[0], q[1]) == d.query(float(q[0]), float(q[1]))


# ----------------------------------------------------------------------------
# hull structure invariant
# ----------------------------------------------------------------------------
def _upper_hull(pts):
    pts = sorted(set(pts))
    out = []
    for p in pts:
        while out and out[-1][0] == p[0]:
            out.pop()
        while len(out) >= 2:
            (x1, y1), (x0, y0) = out[-2], out[-1]
            if (x0 - x1) * (p[1] - y1) - (y0 - y1) * (p[0] - x1) >= 0:
                out.pop()
            else:
                break
        out.append(p)
    return out


def test_chain_is_exact_upper_hull(load):
    rng = random.Random(12)
    for trial in range(100):
        r = rng.choice([2, 5, 100])
        h = HardmaxHull()
        pts = []
        for _ in range(rng.randint(1, 200)):
            p = (rng.randint(-r, r), rng.randint(-r, r))
            pts.append(p)
            h.insert(float(p[0]), float(p[1]), 0.0, 0.0)
        assert h._upper.vertices() == _upper_hull(pts)
        assert h._lower.vertices() == _upper_hull([(x, -y) for x, y in pts])
        assert h.hull_size() == (len(h._upper.vertices()), len(h._lower.vertices()))


# ----------------------------------------------------------------------------
# SumHead
# ----------------------------------------------------------------------------
def test_sum_head():
    rng = np.random.default_rng(13)
    V = rng.normal(size=(1000, 2)) * 10.0 ** rng.integers(-5, 10, size=(1000, 2))
    s = SumHead()
    assert s.value() == (0.0, 0.0)
    cs = np.cumsum(V, axis=0)
    for i, v in enumerate(V):
        s.add(v[0], v[1])
        assert same(s.value(), (cs[i, 0], cs[i, 1]))
    z = SumHead()
    z.add(-0.0, -0.0)
    assert same(z.value(), (-0.0, -0.0))
    assert len(s) == 1000


# ----------------------------------------------------------------------------
# timing (printed, not asserted)
# ----------------------------------------------------------------------------
def test_timing_print():
    n = 100_000
    rng = random.Random(14)
    for name, a_vals in [("random", rng.sample(range(4 * n), n)), ("increasing", list(range(n)))]:
        h = HardmaxHull()
        t0 = time.perf_counter()
        for a in a_vals:
            h.insert(2.0 * a, -float(a * a), float(a), 0.0)
        t1 = time.perf_counter()
        hits = 0
        for a in a_vals:
            hits += h.query(float(a), 1.0)[0] == a
        t2 = time.perf_counter()
        assert hits == n
        print(f"\n[hull timing] parabolic keys, {name} order, n={n}: "
              f"insert {1e6 * (t1 - t0) / n:.2f} us, query {1e6 * (t2 - t1) / n:.2f} us")
