"""Exact 2-D hard-max attention data structures.

A hard-max head with 2-D keys returns the value of the key maximising the
score ``q . k = q0*k0 + q1*k1``.  For q != 0 the maximum is attained on the
boundary of the convex hull of the keys, so it can be found by binary search
on the hull in O(log n).

Everything here is *exact*: coordinates are converted to Python ints (every
finite float64 is a dyadic rational, so all keys are scaled by one common
power of two ``2**S`` and every query by its own power of two; positive
scalings do not change an argmax), and all orientation / score comparisons
are done with Python ints.  No float tolerance is used anywhere.

Classes
-------
HardmaxHull   dynamic: keys arrive in any order; insert amortised
              O(log n + L) where L <= 1024 is the block size (a memmove of at
              most L pointers, i.e. O(log n) in practice; removed vertices are
              paid for by their own insertion), query O(log n).
StaticHull    build-once variant for a fixed memory: ``from_points`` in
              O(n log n) (sort + monotone-chain build), same query semantics.
SumHead       running float64 sum in insertion order.

Tie semantics (bit-for-bit equal to a brute-force scan)
-------------------------------------------------------
best = max_j q.k_j (exact).  The tie set T = {j : q.k_j == best}, which
includes duplicated keys and keys lying in the relative interior of the hull
edge perpendicular to q.  For q == (0, 0) every key ties.

* 'latest': value of max(T) (largest insertion index / memory row index).
  The stored float values are returned unchanged.
* 'mean'  : the exact arithmetic mean of the values in T, correctly rounded
  to float64: the sum is accumulated exactly (Python ints, or
  ``fractions.Fraction`` once a non-integer value has been seen) and divided
  by |T| with a single correctly rounded division.  This is bit-for-bit equal
  to numpy's ``V[T].mean(axis=0)`` (float64 running sum in insertion order,
  then ``/ len(T)``) whenever numpy's running sum is exact, e.g. for integer
  values with |partial sums| <= 2**53 or dyadic values with few bits.  When
  numpy's running sum rounds, this result is the more accurate one
  (reproducing numpy's rounding order would need O(|T|) work per query,
  because T is a union of per-vertex / per-edge groups).  A sum of only
  -0.0 values gives -0.0, as numpy does.  Values must be finite in 'mean'
  mode.
* no keys inserted: (0.0, 0.0).

Data structure
--------------
Two independent "upper chains": the upper hull of (k0, k1) and the upper
hull of (k0, -k1) (i.e. the lower hull).  A chain is a strictly concave
sequence of vertices with distinct x, stored in a blocked list (blocks of
<= 1024 vertices, bisect over block maxima), so inserting/removing a vertex
anywhere costs O(log n + block size) instead of an O(n) memmove.  Every
vertex carries the aggregate of all keys exactly at that point (duplicates);
every edge carries the aggregate of all keys in its relative interior
(collinear points, including former vertices that became collinear).  A key
that falls strictly below a chain can never get back on it (chains only
rise), so it is dropped from that chain.  Queries with q1 > 0 use the upper
chain, q1 < 0 the lower chain, q1 == 0 use the aggregates of all keys with
k0 == max k0 (q0 > 0) or k0 == min k0 (q0 < 0), and q == 0 the aggregate of
all keys.

An aggregate is ``(index, v0, v1)`` in 'latest' mode (merge = keep larger
index) and ``(count, sum0, sum1, negzero0, negzero1)`` in 'mean' mode.
"""

from __future__ import annotations

from bisect import bisect_left
from fractions import Fraction
from math import copysign, inf, isfinite

__all__ = ["HardmaxHull", "StaticHull", "SumHead"]

_LOAD = 512  # blocks are split when they exceed 2 * _LOAD vertices


# ----------------------------------------------------------------------------
# aggregates
# ----------------------------------------------------------------------------
def _merge_latest(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a if a[0] > b[0] else b


def _merge_mean(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] and b[3], a[4] and b[4])


def _exact(v: float):
    """Exact value of a finite float as int (if integral) or Fraction."""
    if v.is_integer():
        return int(v)
    if not isfinite(v):
        raise ValueError("'mean' tie-break needs finite values, got %r" % v)
    return Fraction(v)


def _negzero(v: float) -> bool:
    return v == 0.0 and copysign(1.0, v) < 0.0


def _mean_component(s, c, negzero):
    if s == 0:
        return -0.0 if negzero else 0.0
    try:
        if type(s) is int:
            return s / c  # int / int true division is correctly rounded
        return float(s / c)  # Fraction -> float is correctly rounded
    except OverflowError:
        return copysign(inf, s)


def _result(agg, mean: bool):
    if agg is None:
        return (0.0, 0.0)
    if not mean:
        return (agg[1], agg[2])
    c = agg[0]
    return (_mean_component(agg[1], c, agg[3]), _mean_component(agg[2], c, agg[4]))


# ----------------------------------------------------------------------------
# exact conversion of floats to scaled ints
# ----------------------------------------------------------------------------
def _ratio(x):
    """(numerator, log2(denominator)) of a finite float / int."""
    if type(x) is int:
        return x, 0
    x = float(x)
    n, d = x.as_integer_ratio()  # raises on nan / inf
    return n, d.bit_length() - 1


def _query_ints(q0, q1):
    """Integers (Q0, Q1) = 2**T * (q0, q1) for some T (same T for both)."""
    if isinstance(q0, float) and isinstance(q1, float) and q0.is_integer() and q1.is_integer():
        return int(q0), int(q1)
    n0, s0 = _ratio(q0)
    n1, s1 = _ratio(q1)
    if s0 < s1:
        n0 <<= s1 - s0
    elif s1 < s0:
        n1 <<= s0 - s1
    return n0, n1


# ----------------------------------------------------------------------------
# upper chain in a blocked list
# ----------------------------------------------------------------------------
class _Chain:
    """Strictly concave upper hull chain with per-vertex / per-edge aggregates.

    Block b holds parallel lists X[b], Y[b] (int coordinates, X strictly
    increasing across the whole chain), G[b] (aggregate of keys exactly at the
    vertex) and E[b] (aggregate of keys strictly inside the edge from this
    vertex to the next one, or None).  ``lasts[b] == X[b][-1]``.
    """

    __slots__ = ("X", "Y", "G", "E", "lasts", "merge", "size")

    def __init__(self, merge):
        self.X = []
        self.Y = []
        self.G = []
        self.E = []
        self.lasts = []
        self.merge = merge
        self.size = 0  # number of vertices

    # -- helpers ---------------------------------------------------------
    def rescale(self, t: int) -> None:
        for b in range(len(self.X)):
            self.X[b] = [v << t for v in self.X[b]]
            self.Y[b] = [v << t for v in self.Y[b]]
        self.lasts = [v << t for v in self.lasts]

    def vertices(self):
        """List of (x, y) of all vertices (for debugging / tests)."""
        out = []
        for xs, ys in zip(self.X, self.Y):
            out.extend(zip(xs, ys))
        return out

    def _split(self, b: int) -> None:
        X, Y, G, E = self.X, self.Y, self.G, self.E
        xs = X[b]
        h = len(xs) >> 1
        X.insert(b + 1, xs[h:])
        Y.insert(b + 1, Y[b][h:])
        G.insert(b + 1, G[b][h:])
        E.insert(b + 1, E[b][h:])
        del xs[h:], Y[b][h:], G[b][h:], E[b][h:]
        self.lasts[b] = xs[-1]
        self.lasts.insert(b + 1, X[b + 1][-1])

    # -- insertion -------------------------------------------------------
    def insert(self, x: int, y: int, agg) -> None:
        X, Y, G, E = self.X, self.Y, self.G, self.E
        merge = self.merge
        B = len(X)
        if B == 0:
            X.append([x])
            Y.append([y])
            G.append([agg])
            E.append([None])
            self.lasts.append(x)
            self.size = 1
            return
        b = bisect_left(self.lasts, x)
        if b == B:
            b = B - 1
            i = len(X[b])
        else:
            i = bisect_left(X[b], x)
        xs = X[b]
        n_b = len(xs)

        # position of the first vertex right of x (exclusive of a same-x one)
        if i < n_b and xs[i] == x:
            yv = Y[b][i]
            if y < yv:
                return  # strictly below the chain
            if y == yv:
                G[b][i] = merge(G[b][i], agg)  # duplicate of a vertex
                return
            # strictly above vertex V=(b,i): V is removed
            if i + 1 < n_b:
                rb, ri = b, i + 1
            elif b + 1 < B:
                rb, ri = b + 1, 0
            else:
                rb = -1
        else:
            if i < n_b:
                rb, ri = b, i
            elif b + 1 < B:
                rb, ri = b + 1, 0
            else:
                rb = -1
            if rb >= 0 and (i > 0 or b > 0):
                # x strictly between two consecutive vertices L0 and R0
                if i > 0:
                    lb, li = b, i - 1
                else:
                    lb = b - 1
                    li = len(X[lb]) - 1
                lx = X[lb][li]
                ly = Y[lb][li]
                rx = X[rb][ri]
                ry = Y[rb][ri]
                c = (rx - lx) * (y - ly) - (ry - ly) * (x - lx)
                if c < 0:
                    return  # strictly below the edge
                if c == 0:
                    E[lb][li] = merge(E[lb][li], agg)  # on the edge interior
                    return
        # p = (x, y) becomes a vertex.  left neighbour L0:
        if i > 0:
            lb, li = b, i - 1
        elif b > 0:
            lb = b - 1
            li = len(X[lb]) - 1
        else:
            lb = -1

        # ---- walk left: remove vertices that are not strictly convex -----
        if lb >= 0:
            pend = None
            x0 = X[lb][li]
            y0 = Y[lb][li]
            while True:
                if li > 0:
                    pb, pi = lb, li - 1
                elif lb > 0:
                    pb = lb - 1
                    pi = len(X[pb]) - 1
                else:
                    break
                x1 = X[pb][pi]
                y1 = Y[pb][pi]
                c = (x0 - x1) * (y - y1) - (y0 - y1) * (x - x1)
                if c < 0:
                    break
                if c == 0:  # L0 lies on the open segment L1 -> p
                    pend = merge(merge(pend, G[lb][li]), E[pb][pi])
                else:  # L0 strictly below: everything right of L1 is interior
                    pend = None
                lb, li, x0, y0 = pb, pi, x1, y1
            E[lb][li] = pend  # new edge L -> p
            sb, si = lb, li + 1  # first position to delete / insert at
        else:
            sb, si = 0, 0

        # ---- walk right ------------------------------------------------------
        pend_r = None
        if rb >= 0:
            x0 = X[rb][ri]
            y0 = Y[rb][ri]
            while True:
                if ri + 1 < len(X[rb]):
                    nb, ni = rb, ri + 1
                elif rb + 1 < B:
                    nb, ni = rb + 1, 0
                else:
                    break
                x1 = X[nb][ni]
                y1 = Y[nb][ni]
                c = (x0 - x) * (y1 - y) - (y0 - y) * (x1 - x)
                if c < 0:
                    break
                if c == 0:  # R0 lies on the open segment p -> R1
                    pend_r = merge(merge(pend_r, G[rb][ri]), E[rb][ri])
                else:
                    pend_r = None
                rb, ri, x0, y0 = nb, ni, x1, y1
            eb, ei = rb, ri  # delete up to (excluding) R
        else:
            eb = B - 1
            ei = len(X[eb])

        # ---- replace positions [s, e) by the new vertex ---------------------
        if sb == eb:
            removed = ei - si
            if removed == 1:
                X[sb][si] = x
                Y[sb][si] = y
                G[sb][si] = agg
                E[sb][si] = pend_r
            else:
                if removed:
                    del X[sb][si:ei], Y[sb][si:ei], G[sb][si:ei], E[sb][si:ei]
                X[sb].insert(si, x)
                Y[sb].insert(si, y)
                G[sb].insert(si, agg)
                E[sb].insert(si, pend_r)
            self.size += 1 - removed
            xs = X[sb]
            self.lasts[sb] = xs[-1]
            if len(xs) > 2 * _LOAD:
                self._split(sb)
            return
        # spans several blocks (sb < eb); si may equal len(X[sb]) (append)
        removed = len(X[sb]) - si + ei
        for k in range(sb + 1, eb):
            removed += len(X[k])
        del X[sb][si:], Y[sb][si:], G[sb][si:], E[sb][si:]
        X[sb].append(x)
        Y[sb].append(y)
        G[sb].append(agg)
        E[sb].append(pend_r)
        del X[eb][:ei], Y[eb][:ei], G[eb][:ei], E[eb][:ei]
        lasts = self.lasts
        lasts[sb] = x
        if not X[eb]:
            eb += 1  # the whole end block is gone
        if eb > sb + 1:
            del X[sb + 1 : eb], Y[sb + 1 : eb], G[sb + 1 : eb], E[sb + 1 : eb]
            del lasts[sb + 1 : eb]
        self.size += 1 - removed
        if len(X[sb]) > 2 * _LOAD:
            self._split(sb)

    # -- query -------------------------------------------------------------
    def query(self, q0: int, q1: int):
        """Aggregate of all chain keys maximising q0*x + q1*y; needs q1 > 0."""
        X, Y = self.X, self.Y
        B = len(X)
        if B == 0:
            return None
        # block level: first b whose cross edge (last of b -> first of b+1)
        # has q.d <= 0 (q.d is strictly decreasing along the chain)
        lo, hi = 0, B - 1
        while lo < hi:
            mid = (lo + hi) >> 1
            xa = X[mid]
            xb = X[mid + 1]
            if q0 * (xb[0] - xa[-1]) + q1 * (Y[mid + 1][0] - Y[mid][-1]) <= 0:
                hi = mid
            else:
                lo = mid + 1
        b = lo
        xs = X[b]
        ys = Y[b]
        m = len(xs) - 1
        lo, hi = 0, m
        while lo < hi:
            mid = (lo + hi) >> 1
            if q0 * (xs[mid + 1] - xs[mid]) + q1 * (ys[mid + 1] - ys[mid]) <= 0:
                hi = mid
            else:
                lo = mid + 1
        G = self.G
        if lo < m:
            if q0 * (xs[lo + 1] - xs[lo]) + q1 * (ys[lo + 1] - ys[lo]) == 0:
                merge = self.merge
                return merge(merge(G[b][lo], self.E[b][lo]), G[b][lo + 1])
            return G[b][lo]
        # best is the last vertex of block b; maybe tied with the next block
        if b + 1 < B and q0 * (X[b + 1][0] - xs[m]) + q1 * (Y[b + 1][0] - ys[m]) == 0:
            merge = self.merge
            return merge(merge(G[b][m], self.E[b][m]), G[b + 1][0])
        return G[b][m]


# ----------------------------------------------------------------------------
# public classes
# ----------------------------------------------------------------------------
class HardmaxHull:
    """Exact 2-D hard-max attention over a growing key set.

    Keys arrive in ANY order (not sorted). insert is amortised O(log n)
    (plus block bookkeeping), query O(log n).  See the module docstring for
    the exact tie semantics ('latest' or 'mean').
    """

    def __init__(self, tie_break: str = "latest"):
        if tie_break not in ("latest", "mean"):
            raise ValueError("tie_break must be 'latest' or 'mean', got %r" % (tie_break,))
        self.tie_break = tie_break
        self._mean = tie_break == "mean"
        self._merge = _merge_mean if self._mean else _merge_latest
        self._S = 0  # stored key ints are key * 2**_S
        self._upper = _Chain(self._merge)  # upper hull of (k0, k1)
        self._lower = _Chain(self._merge)  # upper hull of (k0, -k1)
        self._xmin = None
        self._xmax = None
        self._agg_xmin = None  # all keys with k0 == min k0
        self._agg_xmax = None  # all keys with k0 == max k0
        self._agg_all = None  # all keys
        self._n = 0

    def __len__(self) -> int:
        return self._n

    # -- internals -----------------------------------------------------------
    def _rescale(self, t: int) -> None:
        self._S += t
        self._upper.rescale(t)
        self._lower.rescale(t)
        if self._xmin is not None:
            self._xmin <<= t
            self._xmax <<= t

    def _key_ints(self, k0, k1):
        if (
            self._S == 0
            and isinstance(k0, float)
            and isinstance(k1, float)
            and k0.is_integer()
            and k1.is_integer()
        ):
            return int(k0), int(k1)
        n0, s0 = _ratio(k0)
        n1, s1 = _ratio(k1)
        need = s0 if s0 > s1 else s1
        S = self._S
        if need > S:
            self._rescale(need - S)
            S = need
        return n0 << (S - s0), n1 << (S - s1)

    def _make_agg(self, idx: int, v0, v1):
        v0 = float(v0)
        v1 = float(v1)
        if self._mean:
            return (1, _exact(v0), _exact(v1), _negzero(v0), _negzero(v1))
        return (idx, v0, v1)

    def _insert_ints(self, x: int, y: int, agg) -> None:
        merge = self._merge
        self._agg_all = merge(self._agg_all, agg)
        if self._xmin is None:
            self._xmin = self._xmax = x
            self._agg_xmin = self._agg_xmax = agg
        else:
            if x < self._xmin:
                self._xmin = x
                self._agg_xmin = agg
            elif x == self._xmin:
                self._agg_xmin = merge(self._agg_xmin, agg)
            if x > self._xmax:
                self._xmax = x
                self._agg_xmax = agg
            elif x == self._xmax:
                self._agg_xmax = merge(self._agg_xmax, agg)
        self._upper.insert(x, y, agg)
        self._lower.insert(x, -y, agg)

    # -- public API ----------------------------------------------------------
    def insert(self, k0: float, k1: float, v0: float, v1: float) -> None:
        """Insert key (k0, k1) with value (v0, v1); its index is len(self)."""
        x, y = self._key_ints(k0, k1)
        agg = self._make_agg(self._n, v0, v1)
        self._n += 1
        self._insert_ints(x, y, agg)

    def query_agg(self, q0: float, q1: float):
        """Raw aggregate of the tie set (None when empty)."""
        if self._n == 0:
            return None
        Q0, Q1 = _query_ints(q0, q1)
        if Q1 > 0:
            return self._upper.query(Q0, Q1)
        if Q1 < 0:
            return self._lower.query(Q0, -Q1)
        if Q0 > 0:
            return self._agg_xmax
        if Q0 < 0:
            return self._agg_xmin
        return self._agg_all

    def query(self, q0: float, q1: float) -> tuple[float, float]:
        """Value of the hard-max key for query (q0, q1) (see tie semantics)."""
        return _result(self.query_agg(q0, q1), self._mean)

    def query_index(self, q0: float, q1: float) -> int:
        """'latest' mode only: insertion index of the winning key (-1 if empty)."""
        if self._mean:
            raise ValueError("query_index needs tie_break='latest'")
        agg = self.query_agg(q0, q1)
        return -1 if agg is None else agg[0]

    def hull_size(self) -> tuple[int, int]:
        """(#upper-hull vertices, #lower-hull vertices)."""
        return self._upper.size, self._lower.size


class StaticHull(HardmaxHull):
    """Build-once hard-max over a fixed memory (cross attention).

    ``StaticHull.from_points(keys, values, tie_break)`` builds in O(n log n)
    (sort by key, then monotone-chain insertion, each amortised O(1) plus an
    O(log) bisect); the row index is the insertion index, so 'latest' ties are
    won by the largest row index.  Further ``insert`` calls are allowed and
    continue the numbering at n.
    """

    @classmethod
    def from_points(cls, keys, values, tie_break: str = "latest") -> "StaticHull":
        self = cls(tie_break)
        keys = [(k[0], k[1]) for k in keys]
        values = [(v[0], v[1]) for v in values]
        if len(keys) != len(values):
            raise ValueError("keys and values must have the same length")
        n = len(keys)
        if n == 0:
            return self
        # exact ints with one common scale
        rat = [(_ratio(k0), _ratio(k1)) for k0, k1 in keys]
        S = 0
        for (_, s0), (_, s1) in rat:
            if s0 > S:
                S = s0
            if s1 > S:
                S = s1
        self._S = S
        pts = [(n0 << (S - s0), n1 << (S - s1)) for (n0, s0), (n1, s1) in rat]
        order = sorted(range(n), key=pts.__getitem__)
        make = self._make_agg
        aggs = [make(j, v0, v1) for j, (v0, v1) in enumerate(values)]
        ins = self._insert_ints
        for j in order:
            x, y = pts[j]
            ins(x, y, aggs[j])
        self._n = n
        return self


class SumHead:
    """Running float64 sum of 2-D values in insertion order.

    Equal, bit for bit, to numpy's ``np.cumsum(V, axis=0)[-1]`` (plain
    sequential float64 additions; the accumulator starts at -0.0, the additive
    identity, so a sum of only -0.0 stays -0.0).  Empty: (0.0, 0.0).
    """

    __slots__ = ("_s0", "_s1", "_n")

    def __init__(self):
        self._s0 = -0.0
        self._s1 = -0.0
        self._n = 0

    def add(self, v0: float, v1: float) -> None:
        self._s0 += float(v0)
        self._s1 += float(v1)
        self._n += 1

    def value(self) -> tuple[float, float]:
        if self._n == 0:
            return (0.0, 0.0)
        return (self._s0, self._s1)

    def __len__(self) -> int:
        return self._n


# ---- the transformers cache ------------------------------------------------------------------
import copy as _copy

import torch as _torch
from transformers.cache_utils import Cache as _Cache


class HullLayer:
    """One layer's heads for every sequence of the batch: a hull per hard-max head, a running sum
    per sum head, a static hull per cross head. Holds per token only the hull points that are
    still on a hull (O(t) at worst, for keys that are all hull vertices, e.g. parabolic ones)."""
    is_compileable = is_sliding = is_linear = is_dummy = False
    is_croppable = False

    def __init__(self, modes, tie_break):
        self.modes, self.tie_break = list(modes), tie_break
        self.seqs = None          # per batch element: list of per-head structures
        self.length = 0

    @property
    def is_initialized(self):
        return self.seqs is not None

    def get_seq_length(self):
        return self.length

    def get_max_length(self):
        return -1

    def get_mask_sizes(self, query_length):
        return self.length + query_length, 0

    def reset(self):
        self.seqs, self.length = None, 0

    def _new(self):
        return [SumHead() if m == "sum" else HardmaxHull(self.tie_break) for m in self.modes]

    def attend(self, q, k, v, static=None):
        """q, k, v: [B, T, H, 2] float64. Inserts each new key, then queries it (causal, self
        included); cross heads query `static`, their read-only hulls over the memory."""
        B, T, H, _ = q.shape
        if self.seqs is None:
            self.seqs = [self._new() for _ in range(B)]
            for heads in self.seqs:
                for h, mode in enumerate(self.modes):
                    if mode == "cross":
                        heads[h] = static[h]
        out = _torch.zeros_like(q)
        ql, kl, vl = q.tolist(), k.tolist(), v.tolist()
        res = [[[None] * H for _ in range(T)] for _ in range(B)]
        for b in range(B):
            heads = self.seqs[b]
            for t in range(T):
                for h, mode in enumerate(self.modes):
                    s = heads[h]
                    kk, vv, qq = kl[b][t][h], vl[b][t][h], ql[b][t][h]
                    if mode == "sum":
                        s.add(vv[0], vv[1])
                        res[b][t][h] = s.value()
                        continue
                    if mode == "hardmax":
                        s.insert(kk[0], kk[1], vv[0], vv[1])
                    res[b][t][h] = s.query(qq[0], qq[1])
        if H:
            out = _torch.tensor(res, dtype=q.dtype, device=q.device)
        self.length += T
        return out


class WasmHullCache(_Cache):
    """A `Cache` whose layers answer each hard-max query in O(log t) instead of scanning t keys.
    The model's attention calls `attend`; the dense reference path uses a `DynamicCache`."""

    def __init__(self, config):
        super().__init__(layers=[HullLayer(m, config.tie_break) for m in config.head_modes])
        self.tie_break = config.tie_break

    def attend(self, layer_idx, q, k, v, static=None):
        return self.layers[layer_idx].attend(q, k, v, static)

    def static_hulls(self, modes, mem_k, mem_v):
        """Read-only hulls for a layer's cross heads over the memory keys/values [M, H, 2]."""
        mk, mv = mem_k.tolist(), mem_v.tolist()
        return {h: StaticHull.from_points([r[h] for r in mk], [r[h] for r in mv], self.tie_break)
                for h, mode in enumerate(modes) if mode == "cross"}

    def get_seq_length(self, layer_idx=0):
        return self.layers[layer_idx].length if self.layers else 0

    def get_max_length(self):
        return -1

    def get_mask_sizes(self, query_length, layer_idx=0):
        return self.get_seq_length(layer_idx) + query_length, 0

    @property
    def is_initialized(self):
        return any(l.seqs is not None for l in self.layers)

    def reset(self):
        for l in self.layers:
            l.seqs, l.length = None, 0

    def reorder_cache(self, beam_idx):
        for l in self.layers:
            if l.seqs is not None:
                l.seqs = [[s if m == "cross" else _copy.deepcopy(s) for s, m in zip(l.seqs[i], l.modes)]
                          for i in beam_idx.tolist()]

    def batch_repeat_interleave(self, repeats):
        for l in self.layers:
            if l.seqs is not None:
                l.seqs = [[x if m == "cross" else _copy.deepcopy(x) for x, m in zip(s, l.modes)]
                          for s in l.seqs for _ in range(repeats)]

    def batch_select_indices(self, indices):
        self.reorder_cache(indices)

    def crop(self, max_length):
        raise NotImplementedError("a hull cannot forget keys; re-run the prompt instead")

    def update(self, *args, **kwargs):
        raise NotImplementedError("WasmHullCache is used through `attend`, not `update`")
