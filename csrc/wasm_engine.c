/* wasm_engine.c -- fast exact greedy decoder for the wasm-transformer model contract
 * (docs/model-contract.md).  Self-contained C (gcc, __int128), loaded by fast_engine.py via
 * ctypes.  Build: gcc -O3 -fPIC -shared -ffp-contract=off (no -march, no -ffast-math).
 *
 * Per token: x = E[s_t] + sum_f phi_f(t) P[f]; per layer the q/k/v rows that are needed
 * (CSR, ascending column order), every head reads the same x; hard-max heads use an exact
 * dynamic 2-D convex hull (two upper chains in blocked lists, port of hull_cache.py; block
 * summaries in flat arrays and a verified "previous answer block" hint make most queries a few
 * comparisons), sum heads a running float64 sum, cross heads a hull over the constant memory
 * rows; o_proj and down_proj are CSC scatters; FFN gate rows are evaluated in buckets of equal
 * nonzero count, up/down only for neurons with gate > 0; lm_head rows are grouped by sparsity
 * pattern and evaluated in tiles of 8 rows with SSE2 register accumulators (columns with x == 0
 * skipped); argmax with the lowest id on exact ties.
 *
 * Float order: every dot product is 0.0 + w_c x_c + ... in ascending column order, then + bias
 * (as numpy's W @ x + b when all partial sums are exact, which the model construction ensures);
 * no FMA contraction (-ffp-contract=off), no fast-math.
 *
 * Exactness of hard-max: every key / query component must be an integral float64 with
 * |v| < 2^120; it is converted to __int128 and all score comparisons are exact (int128 products
 * while every coordinate is < 2^60, otherwise exact 256-bit products).  A non-integral, non-finite
 * or too large component is an error (never rounded).
 *
 * Tie semantics equal a brute-force scan over the exact scores: 'latest' = largest index among
 * all keys with the maximal score (duplicates, collinear interior points of the edge perpendicular
 * to q, q == 0: every key), 'mean' = exact mean of their values (values must be integral,
 * |v| < 2^53, and the exact sum must stay within 2^53, else error).
 *
 * Attention modes (for cross-checking): 0 = hull (default), 1 = brute force with float64 scores
 * computed exactly as the contract writes them (q0*k0 + q1*k1, O(t) per query), 2 = both, the brute
 * result is used and every disagreement with the hull is counted.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef __int128 i128;
typedef unsigned __int128 u128;

#define EXPORT __attribute__((visibility("default")))
#define LM_TILE 8

/* ------------------------------------------------------------------------------------------ */
/* exact arithmetic                                                                            */
/* ------------------------------------------------------------------------------------------ */
static inline int sgn128(i128 v) { return (v > 0) - (v < 0); }
static inline u128 abs128(i128 v) { return v < 0 ? (u128)0 - (u128)v : (u128)v; }

static inline void mul_u128(u128 a, u128 b, u128 *hi, u128 *lo) {
    uint64_t a0 = (uint64_t)a, a1 = (uint64_t)(a >> 64), b0 = (uint64_t)b, b1 = (uint64_t)(b >> 64);
    u128 p00 = (u128)a0 * b0, p01 = (u128)a0 * b1, p10 = (u128)a1 * b0, p11 = (u128)a1 * b1;
    u128 mid = (p00 >> 64) + (uint64_t)p01 + (uint64_t)p10;
    *lo = (u128)(uint64_t)p00 | (mid << 64);
    *hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
}

/* sign(a*b - c*d), exact for any int128 inputs with |.| < 2^127 */
static int det_wide(i128 a, i128 b, i128 c, i128 d) {
    int s1 = sgn128(a) * sgn128(b), s2 = sgn128(c) * sgn128(d);
    if (s1 != s2) return s1 > s2 ? 1 : -1;
    if (s1 == 0) return 0;
    u128 h1, l1, h2, l2;
    mul_u128(abs128(a), abs128(b), &h1, &l1);
    mul_u128(abs128(c), abs128(d), &h2, &l2);
    int cmp = (h1 != h2) ? (h1 > h2 ? 1 : -1) : (l1 != l2 ? (l1 > l2 ? 1 : -1) : 0);
    return s1 > 0 ? cmp : -cmp;
}

/* sign(a*b - c*d); narrow: every |input| < 2^61 so both products fit easily in int128 */
static inline int det(i128 a, i128 b, i128 c, i128 d, int wide) {
    if (__builtin_expect(wide, 0)) return det_wide(a, b, c, d);
    i128 l = a * b, r = c * d;
    return (l > r) - (l < r);
}
/* sign(q0*dx + q1*dy) */
static inline int dotsign(i128 q0, i128 q1, i128 dx, i128 dy, int wide) {
    if (__builtin_expect(wide, 0)) return det_wide(q0, dx, -q1, dy);
    i128 s = q0 * dx + q1 * dy;
    return (s > 0) - (s < 0);
}

#define COORD_LIMIT 0x1p120   /* |key|, |query| must be below this */
#define NARROW_KEY ((i128)1 << 60)
#define NARROW_Q ((i128)1 << 61)

/* exact conversion of an integral float64 to int128; returns 0 on success */
static inline int to_i128(double v, i128 *out) {
    if (fabs(v) < 0x1p62) {
        int64_t i = (int64_t)v;
        if ((double)i != v) return 1;     /* non-integral (or NaN) */
        *out = i;
        return 0;
    }
    if (!(fabs(v) < COORD_LIMIT)) return 2; /* huge, inf or nan */
    int e;
    double m = frexp(fabs(v), &e);          /* |v| = m 2^e, m in [0.5, 1), e >= 63 */
    int64_t mant = (int64_t)ldexp(m, 53);   /* exact */
    i128 r = (i128)mant << (e - 53);
    *out = v < 0 ? -r : r;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* aggregates                                                                                  */
/* ------------------------------------------------------------------------------------------ */
/* latest: n = index (INT64_MIN = none), a.d, b.d = value.
 * mean:   n = count | negzero0 << 60 | negzero1 << 61 (INT64_MIN = none), a.i, b.i = exact sums */
typedef struct {
    int64_t n;
    union { double d; int64_t i; } a, b;
} Agg;

#define AGG_NONE INT64_MIN
#define MEAN_CNT ((((int64_t)1) << 60) - 1)
#define MEAN_NZ0 (((int64_t)1) << 60)
#define MEAN_NZ1 (((int64_t)1) << 61)

static inline Agg agg_none(void) { Agg r; r.n = AGG_NONE; r.a.i = 0; r.b.i = 0; return r; }

typedef struct {
    int mean;
    int err;            /* 1: mean sum overflow */
} HullCtx;

static inline Agg merge(HullCtx *c, Agg x, Agg y) {
    if (!c->mean) return y.n > x.n ? y : x;
    if (x.n == AGG_NONE) return y;
    if (y.n == AGG_NONE) return x;
    Agg r;
    r.n = ((x.n & MEAN_CNT) + (y.n & MEAN_CNT)) | (x.n & y.n & (MEAN_NZ0 | MEAN_NZ1));
    if (__builtin_add_overflow(x.a.i, y.a.i, &r.a.i)) c->err = 1;
    if (__builtin_add_overflow(x.b.i, y.b.i, &r.b.i)) c->err = 1;
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* upper chain in a blocked list                                                               */
/* ------------------------------------------------------------------------------------------ */
#ifndef WE_LOAD
#define WE_LOAD 64          /* blocks hold at most 2 * WE_LOAD vertices (tests build with 2) */
#endif
#define LOAD WE_LOAD
#define CAP (2 * LOAD + 2)

typedef struct {
    int n;
    i128 *x, *y;
    Agg *g, *e;     /* g: keys exactly at the vertex; e: keys strictly inside edge to next vertex */
} Block;

typedef struct {
    Block **blk;
    i128 *last;     /* last[b] = blk[b]->x[n-1] */
    i128 *ly, *fx, *fy;     /* blk[b]->y[n-1], x[0], y[0]: block summaries for the query search */
    int nb, capb;
    int64_t size;
    int wide;
    int hint;               /* block of the previous query's answer (a hint, verified) */
    HullCtx *ctx;
} Chain;

static Block *block_new(void) {
    Block *b = (Block *)malloc(sizeof(Block));
    char *mem = (char *)malloc((size_t)CAP * (2 * sizeof(i128) + 2 * sizeof(Agg)));
    if (!b || !mem) { fprintf(stderr, "wasm_engine: out of memory\n"); abort(); }
    b->n = 0;
    b->x = (i128 *)mem;
    b->y = b->x + CAP;
    b->g = (Agg *)(b->y + CAP);
    b->e = b->g + CAP;
    return b;
}
static void block_free(Block *b) { free(b->x); free(b); }

static void chain_init(Chain *c, HullCtx *ctx) {
    memset(c, 0, sizeof(*c));
    c->ctx = ctx;
}
static void chain_free(Chain *c) {
    for (int b = 0; b < c->nb; b++) block_free(c->blk[b]);
    free(c->blk);
    free(c->last); free(c->ly); free(c->fx); free(c->fy);
    c->blk = NULL; c->last = c->ly = c->fx = c->fy = NULL; c->nb = c->capb = 0; c->size = 0;
}
static void chain_grow(Chain *c, int need) {
    if (need <= c->capb) return;
    int nc = c->capb ? c->capb * 2 : 8;
    while (nc < need) nc *= 2;
    c->blk = (Block **)realloc(c->blk, sizeof(Block *) * nc);
    c->last = (i128 *)realloc(c->last, sizeof(i128) * nc);
    c->ly = (i128 *)realloc(c->ly, sizeof(i128) * nc);
    c->fx = (i128 *)realloc(c->fx, sizeof(i128) * nc);
    c->fy = (i128 *)realloc(c->fy, sizeof(i128) * nc);
    if (!c->blk || !c->last || !c->ly || !c->fx || !c->fy) { fprintf(stderr, "wasm_engine: out of memory\n"); abort(); }
    c->capb = nc;
}
static inline void chain_sync(Chain *c, int b) {
    const Block *k = c->blk[b];
    c->last[b] = k->x[k->n - 1];
    c->ly[b] = k->y[k->n - 1];
    c->fx[b] = k->x[0];
    c->fy[b] = k->y[0];
}
static void chain_insert_block(Chain *c, int at, Block *b) {
    chain_grow(c, c->nb + 1);
    int m = c->nb - at;
    memmove(c->blk + at + 1, c->blk + at, sizeof(Block *) * m);
    memmove(c->last + at + 1, c->last + at, sizeof(i128) * m);
    memmove(c->ly + at + 1, c->ly + at, sizeof(i128) * m);
    memmove(c->fx + at + 1, c->fx + at, sizeof(i128) * m);
    memmove(c->fy + at + 1, c->fy + at, sizeof(i128) * m);
    c->blk[at] = b;
    c->nb++;
    chain_sync(c, at);
}
static void chain_split(Chain *c, int bi) {
    Block *a = c->blk[bi], *b = block_new();
    int h = a->n >> 1, m = a->n - h;
    memcpy(b->x, a->x + h, sizeof(i128) * m);
    memcpy(b->y, a->y + h, sizeof(i128) * m);
    memcpy(b->g, a->g + h, sizeof(Agg) * m);
    memcpy(b->e, a->e + h, sizeof(Agg) * m);
    b->n = m;
    a->n = h;
    chain_sync(c, bi);
    chain_insert_block(c, bi + 1, b);
}

static inline int lower_bound128(const i128 *a, int n, i128 v) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (a[mid] < v) lo = mid + 1; else hi = mid;
    }
    return lo;
}

static void chain_insert(Chain *C, i128 x, i128 y, Agg agg) {
    HullCtx *ctx = C->ctx;
    if (!C->wide && (x >= NARROW_KEY || x <= -NARROW_KEY || y >= NARROW_KEY || y <= -NARROW_KEY)) C->wide = 1;
    int wide = C->wide;
    int B = C->nb;
    if (B == 0) {
        Block *b = block_new();
        b->x[0] = x; b->y[0] = y; b->g[0] = agg; b->e[0] = agg_none(); b->n = 1;
        chain_insert_block(C, 0, b);
        C->size = 1;
        return;
    }
    Block **blk = C->blk;
    int b, i;
    if (x > C->last[B - 1]) {           /* common case: right of everything */
        b = B - 1;
        i = blk[b]->n;
    } else {
        b = lower_bound128(C->last, B, x);
        i = lower_bound128(blk[b]->x, blk[b]->n, x);
    }
    Block *cb = blk[b];
    int nbk = cb->n;
    int rb, ri = 0;
    if (i < nbk && cb->x[i] == x) {
        i128 yv = cb->y[i];
        if (y < yv) return;
        if (y == yv) { cb->g[i] = merge(ctx, cb->g[i], agg); return; }
        if (i + 1 < nbk) { rb = b; ri = i + 1; }
        else if (b + 1 < B) { rb = b + 1; ri = 0; }
        else rb = -1;
    } else {
        if (i < nbk) { rb = b; ri = i; }
        else if (b + 1 < B) { rb = b + 1; ri = 0; }
        else rb = -1;
        if (rb >= 0 && (i > 0 || b > 0)) {
            int lb, li;
            if (i > 0) { lb = b; li = i - 1; }
            else { lb = b - 1; li = blk[lb]->n - 1; }
            i128 lx = blk[lb]->x[li], ly = blk[lb]->y[li];
            i128 rx = blk[rb]->x[ri], ry = blk[rb]->y[ri];
            int c = det(rx - lx, y - ly, ry - ly, x - lx, wide);
            if (c < 0) return;
            if (c == 0) { blk[lb]->e[li] = merge(ctx, blk[lb]->e[li], agg); return; }
        }
    }
    /* p becomes a vertex; left neighbour L0 */
    int lb, li = 0;
    if (i > 0) { lb = b; li = i - 1; }
    else if (b > 0) { lb = b - 1; li = blk[lb]->n - 1; }
    else lb = -1;

    int sb, si;
    if (lb >= 0) {
        Agg pend = agg_none();
        i128 x0 = blk[lb]->x[li], y0 = blk[lb]->y[li];
        for (;;) {
            int pb, pi;
            if (li > 0) { pb = lb; pi = li - 1; }
            else if (lb > 0) { pb = lb - 1; pi = blk[pb]->n - 1; }
            else break;
            i128 x1 = blk[pb]->x[pi], y1 = blk[pb]->y[pi];
            int c = det(x0 - x1, y - y1, y0 - y1, x - x1, wide);
            if (c < 0) break;
            if (c == 0) pend = merge(ctx, merge(ctx, pend, blk[lb]->g[li]), blk[pb]->e[pi]);
            else pend = agg_none();
            lb = pb; li = pi; x0 = x1; y0 = y1;
        }
        blk[lb]->e[li] = pend;
        sb = lb; si = li + 1;
    } else {
        sb = 0; si = 0;
    }

    Agg pend_r = agg_none();
    int eb, ei;
    if (rb >= 0) {
        i128 x0 = blk[rb]->x[ri], y0 = blk[rb]->y[ri];
        for (;;) {
            int nb_, ni;
            if (ri + 1 < blk[rb]->n) { nb_ = rb; ni = ri + 1; }
            else if (rb + 1 < B) { nb_ = rb + 1; ni = 0; }
            else break;
            i128 x1 = blk[nb_]->x[ni], y1 = blk[nb_]->y[ni];
            int c = det(x0 - x, y1 - y, y0 - y, x1 - x, wide);
            if (c < 0) break;
            if (c == 0) pend_r = merge(ctx, merge(ctx, pend_r, blk[rb]->g[ri]), blk[rb]->e[ri]);
            else pend_r = agg_none();
            rb = nb_; ri = ni; x0 = x1; y0 = y1;
        }
        eb = rb; ei = ri;
    } else {
        eb = B - 1; ei = blk[eb]->n;
    }

    /* replace positions [s, e) by the new vertex */
    if (sb == eb) {
        Block *k = blk[sb];
        int removed = ei - si;
        if (removed == 1) {
            k->x[si] = x; k->y[si] = y; k->g[si] = agg; k->e[si] = pend_r;
        } else {
            int tail = k->n - ei;
            int shift = 1 - removed;  /* new position of element ei: ei + shift */
            if (tail && shift) {
                memmove(k->x + ei + shift, k->x + ei, sizeof(i128) * tail);
                memmove(k->y + ei + shift, k->y + ei, sizeof(i128) * tail);
                memmove(k->g + ei + shift, k->g + ei, sizeof(Agg) * tail);
                memmove(k->e + ei + shift, k->e + ei, sizeof(Agg) * tail);
            }
            k->x[si] = x; k->y[si] = y; k->g[si] = agg; k->e[si] = pend_r;
            k->n += shift;
        }
        C->size += 1 - removed;
        chain_sync(C, sb);
        if (k->n > 2 * LOAD) chain_split(C, sb);
        return;
    }
    /* spans several blocks: sb < eb */
    Block *ks = blk[sb], *ke = blk[eb];
    int64_t removed = (ks->n - si) + ei;
    for (int q = sb + 1; q < eb; q++) removed += blk[q]->n;
    ks->n = si;
    ks->x[si] = x; ks->y[si] = y; ks->g[si] = agg; ks->e[si] = pend_r;
    ks->n = si + 1;
    chain_sync(C, sb);
    if (ei) {
        int m = ke->n - ei;
        memmove(ke->x, ke->x + ei, sizeof(i128) * m);
        memmove(ke->y, ke->y + ei, sizeof(i128) * m);
        memmove(ke->g, ke->g + ei, sizeof(Agg) * m);
        memmove(ke->e, ke->e + ei, sizeof(Agg) * m);
        ke->n = m;
    }
    int del_end = eb;               /* delete blocks [sb+1, del_end) */
    if (ke->n == 0) del_end = eb + 1;
    if (del_end > sb + 1) {
        for (int q = sb + 1; q < del_end; q++) block_free(blk[q]);
        int cnt = del_end - (sb + 1), m = C->nb - del_end;
        memmove(blk + sb + 1, blk + del_end, sizeof(Block *) * m);
        memmove(C->last + sb + 1, C->last + del_end, sizeof(i128) * m);
        memmove(C->ly + sb + 1, C->ly + del_end, sizeof(i128) * m);
        memmove(C->fx + sb + 1, C->fx + del_end, sizeof(i128) * m);
        memmove(C->fy + sb + 1, C->fy + del_end, sizeof(i128) * m);
        C->nb -= cnt;
    }
    if (sb + 1 < C->nb) chain_sync(C, sb + 1);     /* the (shortened) end block */
    C->size += 1 - removed;
    if (ks->n > 2 * LOAD) chain_split(C, sb);
}

/* aggregate of all chain keys maximising q0*x + q1*y; needs q1 > 0 */
static Agg chain_query(Chain *C, i128 q0, i128 q1, int qwide) {
    int B = C->nb;
    if (B == 0) return agg_none();
    int wide = C->wide || qwide;
    Block **blk = C->blk;
    int lo = 0, hi = B - 1;
    const i128 *lx = C->last, *ly = C->ly, *fx = C->fx, *fy = C->fy;
    /* the answer block is the first b whose edge to block b+1 has q.d <= 0 (q.d decreases along
     * the chain). Try the previous answer's block and the last block before searching. */
    int hb = C->hint;
    if (hb >= B) hb = B - 1;
    if ((hb == B - 1 || dotsign(q0, q1, fx[hb + 1] - lx[hb], fy[hb + 1] - ly[hb], wide) <= 0) &&
        (hb == 0 || dotsign(q0, q1, fx[hb] - lx[hb - 1], fy[hb] - ly[hb - 1], wide) > 0)) {
        lo = hb;
    } else {
        if (B > 1 && dotsign(q0, q1, fx[B - 1] - lx[B - 2], fy[B - 1] - ly[B - 2], wide) > 0) lo = B - 1;
        while (lo < hi) {
            int mid = (lo + hi) >> 1;
            if (dotsign(q0, q1, fx[mid + 1] - lx[mid], fy[mid + 1] - ly[mid], wide) <= 0) hi = mid;
            else lo = mid + 1;
        }
        C->hint = lo;
    }
    Block *k = blk[lo];
    const i128 *xs = k->x, *ys = k->y;
    int m = k->n - 1;
    int l = 0, h = m;
    while (l < h) {
        int mid = (l + h) >> 1;
        if (dotsign(q0, q1, xs[mid + 1] - xs[mid], ys[mid + 1] - ys[mid], wide) <= 0) h = mid;
        else l = mid + 1;
    }
    if (l < m) {
        if (dotsign(q0, q1, xs[l + 1] - xs[l], ys[l + 1] - ys[l], wide) == 0)
            return merge(C->ctx, merge(C->ctx, k->g[l], k->e[l]), k->g[l + 1]);
        return k->g[l];
    }
    if (lo + 1 < B && dotsign(q0, q1, fx[lo + 1] - xs[m], fy[lo + 1] - ys[m], wide) == 0)
        return merge(C->ctx, merge(C->ctx, k->g[m], k->e[m]), blk[lo + 1]->g[0]);
    return k->g[m];
}

/* ------------------------------------------------------------------------------------------ */
/* hull = upper chain of (k0, k1) + upper chain of (k0, -k1) + x-extreme groups                */
/* ------------------------------------------------------------------------------------------ */
typedef struct {
    HullCtx ctx;
    Chain up, lo;
    i128 xmin, xmax;
    Agg axmin, axmax, aall;
    int64_t n;
} Hull;

static Hull *hull_new(int mean) {
    Hull *h = (Hull *)calloc(1, sizeof(Hull));
    h->ctx.mean = mean;
    chain_init(&h->up, &h->ctx);
    chain_init(&h->lo, &h->ctx);
    h->axmin = h->axmax = h->aall = agg_none();
    return h;
}
static void hull_clear(Hull *h) {
    chain_free(&h->up);
    chain_free(&h->lo);
    h->up.wide = h->lo.wide = 0;
    h->axmin = h->axmax = h->aall = agg_none();
    h->n = 0;
    h->ctx.err = 0;
}
static void hull_free(Hull *h) {
    if (!h) return;
    chain_free(&h->up);
    chain_free(&h->lo);
    free(h);
}

static void hull_insert(Hull *h, i128 x, i128 y, Agg agg) {
    HullCtx *c = &h->ctx;
    h->aall = merge(c, h->aall, agg);
    if (h->n == 0) {
        h->xmin = h->xmax = x;
        h->axmin = h->axmax = agg;
    } else {
        if (x < h->xmin) { h->xmin = x; h->axmin = agg; }
        else if (x == h->xmin) h->axmin = merge(c, h->axmin, agg);
        if (x > h->xmax) { h->xmax = x; h->axmax = agg; }
        else if (x == h->xmax) h->axmax = merge(c, h->axmax, agg);
    }
    h->n++;
    chain_insert(&h->up, x, y, agg);
    chain_insert(&h->lo, x, -y, agg);
}

static Agg hull_query(Hull *h, i128 q0, i128 q1) {
    if (h->n == 0) return agg_none();
    int qwide = q0 >= NARROW_Q || q0 <= -NARROW_Q || q1 >= NARROW_Q || q1 <= -NARROW_Q;
    if (q1 > 0) return chain_query(&h->up, q0, q1, qwide);
    if (q1 < 0) return chain_query(&h->lo, q0, -q1, qwide);
    if (q0 > 0) return h->axmax;
    if (q0 < 0) return h->axmin;
    return h->aall;
}

/* value pair of an aggregate; returns 0 ok, nonzero on error (mean sum too large) */
static int agg_value(int mean, Agg a, double *v0, double *v1) {
    if (a.n == AGG_NONE) { *v0 = 0.0; *v1 = 0.0; return 0; }
    if (!mean) { *v0 = a.a.d; *v1 = a.b.d; return 0; }
    int64_t cnt = a.n & MEAN_CNT;
    const int64_t lim = (int64_t)1 << 53;
    if (a.a.i > lim || a.a.i < -lim || a.b.i > lim || a.b.i < -lim) return 1;
    *v0 = a.a.i == 0 ? ((a.n & MEAN_NZ0) ? -0.0 : 0.0) : (double)a.a.i / (double)cnt;
    *v1 = a.b.i == 0 ? ((a.n & MEAN_NZ1) ? -0.0 : 0.0) : (double)a.b.i / (double)cnt;
    return 0;
}

/* aggregate of one key; returns 0 ok, 1 if a 'mean' value is not an integer below 2^53 */
static inline int make_agg(int mean, int64_t idx, double v0, double v1, Agg *out) {
    if (!mean) { out->n = idx; out->a.d = v0; out->b.d = v1; return 0; }
    if (!(fabs(v0) < 0x1p53) || !(fabs(v1) < 0x1p53)) return 1;
    int64_t i0 = (int64_t)v0, i1 = (int64_t)v1;
    if ((double)i0 != v0 || (double)i1 != v1) return 1;
    out->n = 1 | ((v0 == 0.0 && signbit(v0)) ? MEAN_NZ0 : 0) | ((v1 == 0.0 && signbit(v1)) ? MEAN_NZ1 : 0);
    out->a.i = i0;
    out->b.i = i1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* standalone hull API (tests)                                                                 */
/* ------------------------------------------------------------------------------------------ */
EXPORT void *wh_new(int mean) { return hull_new(mean); }
EXPORT void wh_free(void *h) { hull_free((Hull *)h); }
/* returns 0 ok, 1 bad key, 2 bad value (mean), 3 mean overflow */
EXPORT int wh_insert(void *hp, double k0, double k1, double v0, double v1, int64_t idx) {
    Hull *h = (Hull *)hp;
    i128 x, y;
    if (to_i128(k0, &x) || to_i128(k1, &y)) return 1;
    Agg a;
    if (make_agg(h->ctx.mean, idx, v0, v1, &a)) return 2;
    hull_insert(h, x, y, a);
    return h->ctx.err ? 3 : 0;
}
/* out: v0, v1; *idx = winning index ('latest') or count ('mean'), -1 when empty */
EXPORT int wh_query(void *hp, double q0, double q1, double *out, int64_t *idx) {
    Hull *h = (Hull *)hp;
    i128 a, b;
    if (to_i128(q0, &a) || to_i128(q1, &b)) return 1;
    Agg r = hull_query(h, a, b);
    if (h->ctx.err) return 3;
    if (agg_value(h->ctx.mean, r, out, out + 1)) return 3;
    *idx = r.n == AGG_NONE ? -1 : (h->ctx.mean ? (r.n & MEAN_CNT) : r.n);
    return 0;
}
EXPORT void wh_sizes(void *hp, int64_t *out) {
    Hull *h = (Hull *)hp;
    out[0] = h->up.size; out[1] = h->lo.size; out[2] = h->up.nb; out[3] = h->lo.nb;
}
/* vertices of the upper (which=0) or lower (which=1) chain as doubles (tests, small coords) */
EXPORT int64_t wh_vertices(void *hp, int which, double *xy, int64_t cap) {
    Hull *h = (Hull *)hp;
    Chain *c = which ? &h->lo : &h->up;
    int64_t n = 0;
    for (int b = 0; b < c->nb; b++)
        for (int i = 0; i < c->blk[b]->n; i++) {
            if (n < cap) { xy[2 * n] = (double)c->blk[b]->x[i]; xy[2 * n + 1] = (double)c->blk[b]->y[i]; }
            n++;
        }
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* the engine                                                                                  */
/* ------------------------------------------------------------------------------------------ */
enum { M_HARDMAX = 0, M_SUM = 1, M_CROSS = 2 };

typedef struct {            /* CSR (rows) or CSC (columns) */
    int n;                  /* number of rows (CSR) / columns (CSC) */
    int64_t *ptr;
    int32_t *idx;
    double *val;
} Sparse;

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "wasm_engine: out of memory\n"); abort(); }
    return p;
}
static void *dup_arr(const void *src, size_t n) {
    void *p = xmalloc(n);
    if (n) memcpy(p, src, n);
    return p;
}

/* rows of a CSR grouped by their number of nonzeros k: each bucket is evaluated by a loop with a
 * fixed trip count (no per-row branch), same ascending-column summation order as the CSR */
typedef struct {
    int nb;
    int *k, *cnt;
    int32_t *row;           /* rows, bucket after bucket */
    int32_t *idx;           /* k column indices per row */
    double *val;
} Buck;

static void buck_build(Buck *B, const Sparse *s) {
    int n = s->n, maxk = 0;
    for (int r = 0; r < n; r++) {
        int k = (int)(s->ptr[r + 1] - s->ptr[r]);
        if (k > maxk) maxk = k;
    }
    int *count = (int *)calloc(maxk + 1, sizeof(int));
    for (int r = 0; r < n; r++) count[s->ptr[r + 1] - s->ptr[r]]++;
    B->nb = 0;
    B->k = (int *)xmalloc(sizeof(int) * (maxk + 1));
    B->cnt = (int *)xmalloc(sizeof(int) * (maxk + 1));
    for (int k = 0; k <= maxk; k++)
        if (count[k]) { B->k[B->nb] = k; B->cnt[B->nb] = count[k]; B->nb++; }
    B->row = (int32_t *)xmalloc(sizeof(int32_t) * (n + 1));
    B->idx = (int32_t *)xmalloc(sizeof(int32_t) * (s->ptr[n] + 1));
    B->val = (double *)xmalloc(sizeof(double) * (s->ptr[n] + 1));
    int pos = 0;
    int64_t z = 0;
    for (int b = 0; b < B->nb; b++)
        for (int r = 0; r < n; r++) {
            if (s->ptr[r + 1] - s->ptr[r] != B->k[b]) continue;
            B->row[pos++] = r;
            for (int64_t q = s->ptr[r]; q < s->ptr[r + 1]; q++) { B->idx[z] = s->idx[q]; B->val[z] = s->val[q]; z++; }
        }
    free(count);
}
static void buck_free(Buck *B) { free(B->k); free(B->cnt); free(B->row); free(B->idx); free(B->val); }

static inline void buck_run(const int32_t *row, const int32_t *idx, const double *val, int cnt, const int K,
                            const double *x, double *out) {
    for (int r = 0; r < cnt; r++) {
        double a = 0.0;
        for (int j = 0; j < K; j++) a += val[j] * x[idx[j]];
        out[row[r]] = a;
        idx += K; val += K;
    }
}
/* out[r] = 0.0 + sum_j val * x[idx] (ascending columns) for every row r */
static void buck_eval(const Buck *B, const double *x, double *out) {
    const int32_t *row = B->row, *idx = B->idx;
    const double *val = B->val;
    for (int b = 0; b < B->nb; b++) {
        int k = B->k[b], c = B->cnt[b];
        switch (k) {
        case 0: for (int r = 0; r < c; r++) out[row[r]] = 0.0; break;
        case 1: buck_run(row, idx, val, c, 1, x, out); break;
        case 2: buck_run(row, idx, val, c, 2, x, out); break;
        case 3: buck_run(row, idx, val, c, 3, x, out); break;
        case 4: buck_run(row, idx, val, c, 4, x, out); break;
        case 5: buck_run(row, idx, val, c, 5, x, out); break;
        case 6: buck_run(row, idx, val, c, 6, x, out); break;
        default: buck_run(row, idx, val, c, k, x, out); break;
        }
        row += c; idx += (int64_t)k * c; val += (int64_t)k * c;
    }
}

typedef struct {
    int64_t n, cap;
    double *k;      /* 2 per key */
    double *v;      /* 2 per key */
} BruteStore;

typedef struct {
    int H;
    int32_t *mode;
    Sparse qkv;             /* 6H rows: q (2H), k (2H), v (2H) */
    double *qkv_b;
    int32_t *tok_rows; int n_tok_rows;
    Sparse o;               /* CSC, 2H columns */
    double *o_b;
    int32_t *o_touch; int n_o_touch;
    int F;
    Sparse gate, up;        /* CSR, F rows */
    Buck gate_bk;
    double *gate_b, *up_b;
    Sparse down;            /* CSC, F columns */
    double *down_b;
    int32_t *d_touch; int n_d_touch;
    Hull **hull;            /* per head (hardmax / cross) */
    BruteStore *brute;      /* per head (hardmax / cross) in brute modes */
    double *sums;           /* 2H */
    int *qconst;            /* per head: q rows have no weights (q = bias) */
    i128 *qc0, *qc1;        /* constant queries converted */
    double *maxk;           /* 2H: max |k| per component (float-risk diagnostic) */
    int64_t *risk;          /* per head: queries whose float64 score might round */
    int64_t *mismatch;      /* per head: brute vs hull disagreements (mode 2) */
} Layer;

typedef struct {
    int ncols, nrows;
    int64_t off;            /* offset of this group's logits in Engine.acc */
    int32_t *cols;          /* ncols */
    int32_t *rows;          /* nrows (token ids) */
    int ntiles;             /* tiles of LM_TILE rows (the last one padded: weight 0, bias -inf) */
    double *wt;             /* [tile][col][LM_TILE] */
    double *bt;             /* [tile][LM_TILE] */
} LmGroup;

typedef struct {
    int d, V, L, mean, attn_mode;
    double *E;              /* V x d */
    int nfeat;
    int featkind[4];        /* 0: t, 1: t2 */
    int32_t *pidx[4]; double *pval[4]; int pn[4];
    Layer *layers;
    int ngroups;
    LmGroup *groups;
    double *acc;            /* logits, group by group (V) */
    double *gmax;           /* per group maximum */
    int32_t *eos; int neos;
    /* state */
    int64_t t;              /* tokens processed */
    int32_t pending;        /* token in the sequence but not processed yet, -1 none */
    double *x, *tmp, *qkv, *out, *hid;
    int32_t *act;
    int32_t *lm_ci; double *lm_xv;
    int64_t nmem;
    char err[512];
    int64_t max_out;        /* scratch */
} Engine;

static int set_err(Engine *e, const char *msg) {
    snprintf(e->err, sizeof(e->err), "%s", msg);
    return -1;
}

static void sparse_set(Sparse *s, int n, const int64_t *ptr, const int32_t *idx, const double *val) {
    s->n = n;
    s->ptr = (int64_t *)dup_arr(ptr, sizeof(int64_t) * (n + 1));
    int64_t nnz = ptr[n];
    s->idx = (int32_t *)dup_arr(idx, sizeof(int32_t) * nnz);
    s->val = (double *)dup_arr(val, sizeof(double) * nnz);
}
static void sparse_free(Sparse *s) { free(s->ptr); free(s->idx); free(s->val); }

EXPORT void *we_new(int d, int V, int L, int mean) {
    Engine *e = (Engine *)calloc(1, sizeof(Engine));
    e->d = d; e->V = V; e->L = L; e->mean = mean;
    e->layers = (Layer *)calloc(L > 0 ? L : 1, sizeof(Layer));
    e->x = (double *)calloc(d, sizeof(double));
    e->tmp = (double *)calloc(d, sizeof(double));
    e->pending = -1;
    return e;
}

EXPORT const char *we_error(void *ep) { return ((Engine *)ep)->err; }

EXPORT void we_set_embed(void *ep, const double *E, int nfeat, const int32_t *kinds, const double *P) {
    Engine *e = (Engine *)ep;
    e->E = (double *)dup_arr(E, sizeof(double) * (size_t)e->V * e->d);
    e->nfeat = nfeat;
    for (int f = 0; f < nfeat; f++) {
        e->featkind[f] = kinds[f];
        int n = 0;
        for (int j = 0; j < e->d; j++) n += P[(size_t)f * e->d + j] != 0.0;
        e->pidx[f] = (int32_t *)xmalloc(sizeof(int32_t) * n);
        e->pval[f] = (double *)xmalloc(sizeof(double) * n);
        e->pn[f] = n;
        n = 0;
        for (int j = 0; j < e->d; j++) {
            double v = P[(size_t)f * e->d + j];
            if (v != 0.0) { e->pidx[f][n] = j; e->pval[f][n] = v; n++; }
        }
    }
}

static int32_t *touch_rows(int d, const Sparse *csc, const double *bias, int *count) {
    char *m = (char *)calloc(d, 1);
    for (int64_t z = 0; z < csc->ptr[csc->n]; z++) m[csc->idx[z]] = 1;
    for (int r = 0; r < d; r++) if (bias[r] != 0.0) m[r] = 1;
    int n = 0;
    for (int r = 0; r < d; r++) n += m[r];
    int32_t *out = (int32_t *)xmalloc(sizeof(int32_t) * n);
    n = 0;
    for (int r = 0; r < d; r++) if (m[r]) out[n++] = r;
    free(m);
    *count = n;
    return out;
}

EXPORT void we_set_layer(void *ep, int l, int H, const int32_t *modes,
                         const int64_t *qkv_ptr, const int32_t *qkv_idx, const double *qkv_val, const double *qkv_b,
                         const int64_t *o_ptr, const int32_t *o_idx, const double *o_val, const double *o_b,
                         int F,
                         const int64_t *g_ptr, const int32_t *g_idx, const double *g_val, const double *g_b,
                         const int64_t *u_ptr, const int32_t *u_idx, const double *u_val, const double *u_b,
                         const int64_t *dn_ptr, const int32_t *dn_idx, const double *dn_val, const double *dn_b) {
    Engine *e = (Engine *)ep;
    Layer *ly = &e->layers[l];
    int d = e->d;
    ly->H = H;
    ly->mode = (int32_t *)dup_arr(modes, sizeof(int32_t) * H);
    sparse_set(&ly->qkv, 6 * H, qkv_ptr, qkv_idx, qkv_val);
    ly->qkv_b = (double *)dup_arr(qkv_b, sizeof(double) * 6 * H);
    /* rows needed per decoder token */
    ly->tok_rows = (int32_t *)xmalloc(sizeof(int32_t) * (6 * H + 1));
    int n = 0;
    for (int h = 0; h < H; h++) {
        int m = modes[h];
        if (m == M_HARDMAX || m == M_CROSS) { ly->tok_rows[n++] = 2 * h; ly->tok_rows[n++] = 2 * h + 1; }
    }
    for (int h = 0; h < H; h++)
        if (modes[h] == M_HARDMAX) { ly->tok_rows[n++] = 2 * H + 2 * h; ly->tok_rows[n++] = 2 * H + 2 * h + 1; }
    for (int h = 0; h < H; h++)
        if (modes[h] == M_HARDMAX || modes[h] == M_SUM) { ly->tok_rows[n++] = 4 * H + 2 * h; ly->tok_rows[n++] = 4 * H + 2 * h + 1; }
    ly->n_tok_rows = n;
    sparse_set(&ly->o, 2 * H, o_ptr, o_idx, o_val);
    ly->o_b = (double *)dup_arr(o_b, sizeof(double) * d);
    ly->o_touch = touch_rows(d, &ly->o, ly->o_b, &ly->n_o_touch);
    ly->F = F;
    sparse_set(&ly->gate, F, g_ptr, g_idx, g_val);
    buck_build(&ly->gate_bk, &ly->gate);
    sparse_set(&ly->up, F, u_ptr, u_idx, u_val);
    ly->gate_b = (double *)dup_arr(g_b, sizeof(double) * F);
    ly->up_b = (double *)dup_arr(u_b, sizeof(double) * F);
    sparse_set(&ly->down, F, dn_ptr, dn_idx, dn_val);
    ly->down_b = (double *)dup_arr(dn_b, sizeof(double) * d);
    ly->d_touch = touch_rows(d, &ly->down, ly->down_b, &ly->n_d_touch);
    ly->hull = (Hull **)calloc(H ? H : 1, sizeof(Hull *));
    ly->brute = (BruteStore *)calloc(H ? H : 1, sizeof(BruteStore));
    for (int h = 0; h < H; h++)
        if (modes[h] != M_SUM) ly->hull[h] = hull_new(e->mean);
    ly->sums = (double *)calloc(2 * H + 1, sizeof(double));
    ly->qconst = (int *)calloc(H + 1, sizeof(int));
    ly->qc0 = (i128 *)calloc(H + 1, sizeof(i128));
    ly->qc1 = (i128 *)calloc(H + 1, sizeof(i128));
    ly->maxk = (double *)calloc(2 * H + 1, sizeof(double));
    ly->risk = (int64_t *)calloc(H + 1, sizeof(int64_t));
    ly->mismatch = (int64_t *)calloc(H + 1, sizeof(int64_t));
    for (int h = 0; h < H; h++) {
        if (modes[h] == M_SUM) continue;
        if (ly->qkv.ptr[2 * h] == ly->qkv.ptr[2 * h + 2]) {
            /* constant query (bias only); q = 0.0 + b exactly */
            i128 a, b;
            if (!to_i128(0.0 + ly->qkv_b[2 * h], &a) && !to_i128(0.0 + ly->qkv_b[2 * h + 1], &b)) {
                ly->qconst[h] = 1; ly->qc0[h] = a; ly->qc1[h] = b;
            }
        }
    }
    if (6 * H > e->max_out) e->max_out = 6 * H;
    if (F > e->max_out) e->max_out = F;
}

EXPORT void we_set_lm(void *ep, int ngroups, const int32_t *ncols, const int32_t *nrows,
                      const int32_t *cols, const int32_t *rows, const double *w, const double *b) {
    Engine *e = (Engine *)ep;
    e->ngroups = ngroups;
    e->groups = (LmGroup *)calloc(ngroups ? ngroups : 1, sizeof(LmGroup));
    int64_t co = 0, ro = 0, wo = 0, pad = 0;
    for (int g = 0; g < ngroups; g++) {
        LmGroup *G = &e->groups[g];
        G->ncols = ncols[g]; G->nrows = nrows[g];
        G->cols = (int32_t *)dup_arr(cols + co, sizeof(int32_t) * G->ncols);
        G->rows = (int32_t *)dup_arr(rows + ro, sizeof(int32_t) * G->nrows);
        int nt = (G->nrows + LM_TILE - 1) / LM_TILE, nc = G->ncols, nr = G->nrows;
        G->ntiles = nt;
        G->wt = (double *)calloc((size_t)nt * nc * LM_TILE + 1, sizeof(double));
        G->bt = (double *)xmalloc(sizeof(double) * ((size_t)nt * LM_TILE + 1));
        for (int r = 0; r < nt * LM_TILE; r++) G->bt[r] = r < nr ? b[G->rows[r]] : -INFINITY;
        for (int c = 0; c < nc; c++)
            for (int r = 0; r < nr; r++)
                G->wt[((size_t)(r / LM_TILE) * nc + c) * LM_TILE + r % LM_TILE] = w[wo + (size_t)c * nr + r];
        G->off = pad;
        co += nc; ro += nr; wo += (int64_t)nc * nr; pad += (int64_t)nt * LM_TILE;
    }
    e->acc = (double *)xmalloc(sizeof(double) * (pad + 2));
    e->gmax = (double *)xmalloc(sizeof(double) * (ngroups + 1));
}

EXPORT void we_set_eos(void *ep, int n, const int32_t *ids) {
    Engine *e = (Engine *)ep;
    free(e->eos);
    e->eos = (int32_t *)dup_arr(ids, sizeof(int32_t) * n);
    e->neos = n;
}

EXPORT void we_finalize(void *ep) {
    Engine *e = (Engine *)ep;
    int m = e->max_out + 8;
    e->qkv = (double *)calloc(m, sizeof(double));
    e->out = (double *)calloc(m, sizeof(double));
    e->hid = (double *)calloc(m, sizeof(double));
    e->act = (int32_t *)calloc(m, sizeof(int32_t));
    e->lm_ci = (int32_t *)calloc(e->d + 1, sizeof(int32_t));
    e->lm_xv = (double *)calloc(e->d + 1, sizeof(double));
}

EXPORT void we_set_attn_mode(void *ep, int mode) { ((Engine *)ep)->attn_mode = mode; }

static void brute_clear(BruteStore *s) { s->n = 0; }
static void brute_push(BruteStore *s, double k0, double k1, double v0, double v1) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->k = (double *)realloc(s->k, sizeof(double) * 2 * s->cap);
        s->v = (double *)realloc(s->v, sizeof(double) * 2 * s->cap);
        if (!s->k || !s->v) { fprintf(stderr, "wasm_engine: out of memory\n"); abort(); }
    }
    s->k[2 * s->n] = k0; s->k[2 * s->n + 1] = k1;
    s->v[2 * s->n] = v0; s->v[2 * s->n + 1] = v1;
    s->n++;
}
/* the contract's scan: scores q0*k0 + q1*k1 in float64, ties latest / mean */
static void brute_query(const BruteStore *s, int mean, double q0, double q1, double *o0, double *o1) {
    if (s->n == 0) { *o0 = 0.0; *o1 = 0.0; return; }
    double best = -INFINITY;
    int64_t arg = 0;
    for (int64_t j = 0; j < s->n; j++) {
        double sc = q0 * s->k[2 * j] + q1 * s->k[2 * j + 1];
        if (sc >= best) { best = sc; arg = j; }
    }
    if (!mean) { *o0 = s->v[2 * arg]; *o1 = s->v[2 * arg + 1]; return; }
    double a = 0.0, b = 0.0;
    int64_t c = 0;
    for (int64_t j = 0; j < s->n; j++) {
        double sc = q0 * s->k[2 * j] + q1 * s->k[2 * j + 1];
        if (sc == best) { a += s->v[2 * j]; b += s->v[2 * j + 1]; c++; }
    }
    *o0 = a / (double)c; *o1 = b / (double)c;
}

static void engine_clear_state(Engine *e) {
    e->t = 0;
    e->pending = -1;
    for (int l = 0; l < e->L; l++) {
        Layer *ly = &e->layers[l];
        for (int h = 0; h < ly->H; h++) {
            if (ly->mode[h] == M_HARDMAX) {
                hull_clear(ly->hull[h]);
                brute_clear(&ly->brute[h]);
                ly->maxk[2 * h] = ly->maxk[2 * h + 1] = 0.0;
            }
            ly->sums[2 * h] = ly->sums[2 * h + 1] = 0.0;
            ly->risk[h] = ly->mismatch[h] = 0;
        }
    }
    e->err[0] = 0;
}

EXPORT void we_reset(void *ep) { engine_clear_state((Engine *)ep); }

static inline double csr_dot(const Sparse *s, int r, const double *x) {
    double a = 0.0;
    for (int64_t z = s->ptr[r], end = s->ptr[r + 1]; z < end; z++) a += s->val[z] * x[s->idx[z]];
    return a;
}

/* logits of one lm_head group into a[] (padded to whole tiles); returns their maximum.
 * Each row: 0.0 + w_c0 x_c0 + w_c1 x_c1 + ... (ascending columns, zero x skipped) + bias. */
static double lm_group(const LmGroup *G, const double *x, double *a, int32_t *ci, double *xv) {
    int m = 0, nc = G->ncols;
    for (int c = 0; c < nc; c++) {
        double v = x[G->cols[c]];
        ci[m] = c;
        xv[m] = v;
        m += v != 0.0;
    }
#if defined(__SSE2__) && LM_TILE == 8 && !defined(WE_NO_SSE)
    __m128d mx0 = _mm_set1_pd(-INFINITY), mx1 = mx0;
    for (int t = 0; t < G->ntiles; t++) {
        const double *wt = G->wt + (size_t)t * nc * 8;
        __m128d a0 = _mm_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < m; j++) {
            const double *w = wt + (size_t)ci[j] * 8;
            __m128d v = _mm_set1_pd(xv[j]);
            a0 = _mm_add_pd(a0, _mm_mul_pd(_mm_loadu_pd(w), v));
            a1 = _mm_add_pd(a1, _mm_mul_pd(_mm_loadu_pd(w + 2), v));
            a2 = _mm_add_pd(a2, _mm_mul_pd(_mm_loadu_pd(w + 4), v));
            a3 = _mm_add_pd(a3, _mm_mul_pd(_mm_loadu_pd(w + 6), v));
        }
        const double *b = G->bt + (size_t)t * 8;
        a0 = _mm_add_pd(a0, _mm_loadu_pd(b));
        a1 = _mm_add_pd(a1, _mm_loadu_pd(b + 2));
        a2 = _mm_add_pd(a2, _mm_loadu_pd(b + 4));
        a3 = _mm_add_pd(a3, _mm_loadu_pd(b + 6));
        double *o = a + (size_t)t * 8;
        _mm_storeu_pd(o, a0);
        _mm_storeu_pd(o + 2, a1);
        _mm_storeu_pd(o + 4, a2);
        _mm_storeu_pd(o + 6, a3);
        mx0 = _mm_max_pd(mx0, _mm_max_pd(a0, a1));
        mx1 = _mm_max_pd(mx1, _mm_max_pd(a2, a3));
    }
    double tt[2];
    _mm_storeu_pd(tt, _mm_max_pd(mx0, mx1));
    return tt[0] > tt[1] ? tt[0] : tt[1];
#else
    double mx = -INFINITY;
    for (int t = 0; t < G->ntiles; t++) {
        const double *wt = G->wt + (size_t)t * nc * LM_TILE;
        double acc[LM_TILE];
        for (int i = 0; i < LM_TILE; i++) acc[i] = 0.0;
        for (int j = 0; j < m; j++) {
            const double *w = wt + (size_t)ci[j] * LM_TILE;
            for (int i = 0; i < LM_TILE; i++) acc[i] += w[i] * xv[j];
        }
        for (int i = 0; i < LM_TILE; i++) {
            double v = acc[i] + G->bt[(size_t)t * LM_TILE + i];
            a[(size_t)t * LM_TILE + i] = v;
            if (v > mx) mx = v;
        }
    }
    return mx;
#endif
}

static void embed(const Engine *e, int32_t tok, int64_t pos, double *x) {
    memcpy(x, e->E + (size_t)tok * e->d, sizeof(double) * e->d);
    double t = (double)pos;
    for (int f = 0; f < e->nfeat; f++) {
        double phi = e->featkind[f] == 0 ? t : t * t;
        const int32_t *pi = e->pidx[f];
        const double *pv = e->pval[f];
        for (int z = 0; z < e->pn[f]; z++) x[pi[z]] += phi * pv[z];
    }
}

/* cross heads: build per-head hulls from the memory rows */
EXPORT int we_set_memory(void *ep, const int32_t *ids, int64_t M) {
    Engine *e = (Engine *)ep;
    double *y = (double *)xmalloc(sizeof(double) * e->d);
    e->nmem = M;
    for (int l = 0; l < e->L; l++) {
        Layer *ly = &e->layers[l];
        int H = ly->H;
        for (int h = 0; h < H; h++)
            if (ly->mode[h] == M_CROSS) { hull_clear(ly->hull[h]); brute_clear(&ly->brute[h]); }
    }
    for (int64_t i = 0; i < M; i++) {
        if (ids[i] < 0 || ids[i] >= e->V) { free(y); return set_err(e, "memory token id out of range"); }
        embed(e, ids[i], i, y);
        for (int l = 0; l < e->L; l++) {
            Layer *ly = &e->layers[l];
            int H = ly->H;
            for (int h = 0; h < H; h++) {
                if (ly->mode[h] != M_CROSS) continue;
                double k0 = csr_dot(&ly->qkv, 2 * H + 2 * h, y) + ly->qkv_b[2 * H + 2 * h];
                double k1 = csr_dot(&ly->qkv, 2 * H + 2 * h + 1, y) + ly->qkv_b[2 * H + 2 * h + 1];
                double v0 = csr_dot(&ly->qkv, 4 * H + 2 * h, y) + ly->qkv_b[4 * H + 2 * h];
                double v1 = csr_dot(&ly->qkv, 4 * H + 2 * h + 1, y) + ly->qkv_b[4 * H + 2 * h + 1];
                brute_push(&ly->brute[h], k0, k1, v0, v1);
                i128 a, b;
                if (to_i128(k0, &a) || to_i128(k1, &b)) {
                    char msg[200];
                    snprintf(msg, sizeof msg, "layer %d cross head %d: memory key (%.17g, %.17g) of row %lld is not an integer below 2^120",
                             l, h, k0, k1, (long long)i);
                    free(y);
                    return set_err(e, msg);
                }
                Agg ag;
                if (make_agg(e->mean, i, v0, v1, &ag)) { free(y); return set_err(e, "'mean' tie-break needs integral values below 2^53"); }
                hull_insert(ly->hull[h], a, b, ag);
                if (ly->hull[h]->ctx.err) { free(y); return set_err(e, "'mean' tie-break: exact sum of tied values overflows"); }
                if (fabs(k0) > ly->maxk[2 * h]) ly->maxk[2 * h] = fabs(k0);
                if (fabs(k1) > ly->maxk[2 * h + 1]) ly->maxk[2 * h + 1] = fabs(k1);
            }
        }
    }
    free(y);
    return 0;
}

/* one token through the stack; writes the argmax into *next when lm != 0 */
static int forward(Engine *e, int32_t tok, int lm, int32_t *next) {
    if (tok < 0 || tok >= e->V) return set_err(e, "token id out of range");
    double *x = e->x, *tmp = e->tmp, *qkv = e->qkv, *out = e->out;
    const int64_t t = e->t;
    embed(e, tok, t, x);
    for (int l = 0; l < e->L; l++) {
        Layer *ly = &e->layers[l];
        int H = ly->H;
        if (H) {
            for (int z = 0; z < ly->n_tok_rows; z++) {
                int r = ly->tok_rows[z];
                qkv[r] = csr_dot(&ly->qkv, r, x) + ly->qkv_b[r];
            }
            for (int h = 0; h < H; h++) {
                int m = ly->mode[h];
                double *o = out + 2 * h;
                if (m == M_SUM) {
                    ly->sums[2 * h] += qkv[4 * H + 2 * h];
                    ly->sums[2 * h + 1] += qkv[4 * H + 2 * h + 1];
                    o[0] = ly->sums[2 * h];
                    o[1] = ly->sums[2 * h + 1];
                    continue;
                }
                Hull *hl = ly->hull[h];
                double q0 = qkv[2 * h], q1 = qkv[2 * h + 1];
                if (m == M_HARDMAX) {
                    double k0 = qkv[2 * H + 2 * h], k1 = qkv[2 * H + 2 * h + 1];
                    double v0 = qkv[4 * H + 2 * h], v1 = qkv[4 * H + 2 * h + 1];
                    if (fabs(k0) > ly->maxk[2 * h]) ly->maxk[2 * h] = fabs(k0);
                    if (fabs(k1) > ly->maxk[2 * h + 1]) ly->maxk[2 * h + 1] = fabs(k1);
                    if (e->attn_mode) brute_push(&ly->brute[h], k0, k1, v0, v1);
                    if (e->attn_mode != 1) {
                        i128 a, b;
                        int bad = to_i128(k0, &a) | to_i128(k1, &b);
                        if (__builtin_expect(bad, 0)) {
                            char msg[256];
                            snprintf(msg, sizeof msg, "layer %d head %d position %lld: key (%.17g, %.17g) is not an integer below 2^120 (exact hard-max impossible)",
                                     l, h, (long long)t, k0, k1);
                            return set_err(e, msg);
                        }
                        Agg ag;
                        if (make_agg(e->mean, t, v0, v1, &ag)) return set_err(e, "'mean' tie-break needs integral values below 2^53");
                        hull_insert(hl, a, b, ag);
                    }
                }
                /* float-risk diagnostic: can q0*k0 + q1*k1 round in float64 for some key? */
                if (fabs(q0) * ly->maxk[2 * h] + fabs(q1) * ly->maxk[2 * h + 1] >= 0x1p53) ly->risk[h]++;
                double r0 = 0.0, r1 = 0.0;
                if (e->attn_mode != 1) {
                    i128 a, b;
                    if (ly->qconst[h]) { a = ly->qc0[h]; b = ly->qc1[h]; }
                    else if (__builtin_expect(to_i128(q0, &a) | to_i128(q1, &b), 0)) {
                        char msg[256];
                        snprintf(msg, sizeof msg, "layer %d head %d position %lld: query (%.17g, %.17g) is not an integer below 2^120 (exact hard-max impossible)",
                                 l, h, (long long)t, q0, q1);
                        return set_err(e, msg);
                    }
                    Agg ag = hull_query(hl, a, b);
                    if (hl->ctx.err || agg_value(e->mean, ag, &r0, &r1))
                        return set_err(e, "'mean' tie-break: exact sum of tied values exceeds 2^53");
                }
                if (e->attn_mode) {
                    double b0, b1;
                    brute_query(&ly->brute[h], e->mean, q0, q1, &b0, &b1);
                    if (e->attn_mode == 2 && (b0 != r0 || b1 != r1 || signbit(b0) != signbit(r0) || signbit(b1) != signbit(r1)))
                        ly->mismatch[h]++;
                    r0 = b0; r1 = b1;
                }
                o[0] = r0;
                o[1] = r1;
            }
            /* x += Wo out + bo */
            const Sparse *O = &ly->o;
            for (int c = 0; c < 2 * H; c++) {
                double oc = out[c];
                if (oc == 0.0) continue;
                for (int64_t z = O->ptr[c]; z < O->ptr[c + 1]; z++) tmp[O->idx[z]] += O->val[z] * oc;
            }
            for (int z = 0; z < ly->n_o_touch; z++) {
                int r = ly->o_touch[z];
                x[r] += tmp[r] + ly->o_b[r];
                tmp[r] = 0.0;
            }
        }
        if (ly->F) {
            const Sparse *U = &ly->up, *D = &ly->down;
            double *gv = e->hid;
            int32_t *act = e->act;
            buck_eval(&ly->gate_bk, x, gv);
            int na = 0;
            for (int i = 0; i < ly->F; i++) {       /* branch-free list of neurons with gate > 0 */
                double g = gv[i] + ly->gate_b[i];
                gv[i] = g;
                act[na] = i;
                na += g > 0.0;
            }
            for (int z0 = 0; z0 < na; z0++) {
                int i = act[z0];
                double h = gv[i] * (csr_dot(U, i, x) + ly->up_b[i]);   /* relu(g) * u, g > 0 */
                if (h == 0.0) continue;
                for (int64_t z = D->ptr[i]; z < D->ptr[i + 1]; z++) tmp[D->idx[z]] += D->val[z] * h;
            }
            for (int z = 0; z < ly->n_d_touch; z++) {
                int r = ly->d_touch[z];
                x[r] += tmp[r] + ly->down_b[r];
                tmp[r] = 0.0;
            }
        }
    }
    e->t = t + 1;
    if (!lm) return 0;
    for (int j = 0; j < e->d; j++)
        if (!isfinite(x[j])) return set_err(e, "non-finite value in the residual stream");
    /* logits group by group: acc = 0 + sum_c w[:, c] x_c (ascending c) + b, then a vectorised max;
     * the lowest id with the maximal logit is searched only in groups that reach the maximum */
    double best = -INFINITY;
    double *acc = e->acc;
    for (int g = 0; g < e->ngroups; g++) {
        double m = lm_group(&e->groups[g], x, acc + e->groups[g].off, e->lm_ci, e->lm_xv);
        e->gmax[g] = m;
        if (m > best) best = m;
    }
    if (!(best > -INFINITY)) return set_err(e, "no finite logit");
    int32_t arg = INT32_MAX;
    for (int g = 0; g < e->ngroups; g++) {
        if (e->gmax[g] != best) continue;
        const LmGroup *G = &e->groups[g];
        const double *a = acc + G->off;
        for (int r = 0; r < G->nrows; r++)      /* rows ascending by id: first hit is the lowest */
            if (a[r] == best) { if (G->rows[r] < arg) arg = G->rows[r]; break; }
    }
    *next = arg;
    return 0;
}

static inline int is_eos(const Engine *e, int32_t tok) {
    for (int i = 0; i < e->neos; i++) if (e->eos[i] == tok) return 1;
    return 0;
}

/* append tokens without predicting: the last one stays pending (processed when needed) */
EXPORT int we_feed(void *ep, const int32_t *ids, int64_t n) {
    Engine *e = (Engine *)ep;
    if (n <= 0) return 0;
    int32_t dummy;
    if (e->pending >= 0) {
        if (forward(e, e->pending, 0, &dummy)) return -1;
        e->pending = -1;
    }
    for (int64_t i = 0; i + 1 < n; i++)
        if (forward(e, ids[i], 0, &dummy)) return -1;
    if (ids[n - 1] < 0 || ids[n - 1] >= e->V) return set_err(e, "token id out of range");
    e->pending = ids[n - 1];
    return 0;
}

/* greedy decode up to max_new tokens into out; returns the count (>= 0), or -1 on error.
 * *stopped = 1 when the last token is an EOS. The last generated token stays pending. */
EXPORT int64_t we_decode(void *ep, int32_t *out, int64_t max_new, int *stopped) {
    Engine *e = (Engine *)ep;
    *stopped = 0;
    if (max_new <= 0) return 0;
    if (e->pending < 0) { set_err(e, "nothing to decode from: feed a prompt first"); return -1; }
    int64_t n = 0;
    int32_t tok = e->pending;
    while (n < max_new) {
        int32_t next;
        if (forward(e, tok, 1, &next)) { e->pending = -1; return -1; }
        out[n++] = next;
        tok = next;
        if (is_eos(e, next)) { *stopped = 1; break; }
    }
    e->pending = tok;
    return n;
}

EXPORT int64_t we_position(void *ep) {
    Engine *e = (Engine *)ep;
    return e->t + (e->pending >= 0);
}

/* per head: [layer, head, mode, upper size, lower size, float-risk queries, mismatches] */
EXPORT int we_stats(void *ep, int64_t *out, int cap) {
    Engine *e = (Engine *)ep;
    int n = 0;
    for (int l = 0; l < e->L; l++) {
        Layer *ly = &e->layers[l];
        for (int h = 0; h < ly->H; h++) {
            if (n < cap) {
                int64_t *r = out + 7 * n;
                r[0] = l; r[1] = h; r[2] = ly->mode[h];
                r[3] = ly->hull[h] ? ly->hull[h]->up.size : 0;
                r[4] = ly->hull[h] ? ly->hull[h]->lo.size : 0;
                r[5] = ly->risk[h];
                r[6] = ly->mismatch[h];
            }
            n++;
        }
    }
    return n;
}

EXPORT void we_free(void *ep) {
    Engine *e = (Engine *)ep;
    if (!e) return;
    for (int l = 0; l < e->L; l++) {
        Layer *ly = &e->layers[l];
        if (!ly->mode) continue;
        for (int h = 0; h < ly->H; h++) {
            hull_free(ly->hull[h]);
            free(ly->brute[h].k); free(ly->brute[h].v);
        }
        free(ly->hull); free(ly->brute); free(ly->mode);
        buck_free(&ly->gate_bk);
        sparse_free(&ly->qkv); sparse_free(&ly->o); sparse_free(&ly->gate); sparse_free(&ly->up); sparse_free(&ly->down);
        free(ly->qkv_b); free(ly->tok_rows); free(ly->o_b); free(ly->o_touch);
        free(ly->gate_b); free(ly->up_b); free(ly->down_b); free(ly->d_touch);
        free(ly->sums); free(ly->qconst); free(ly->qc0); free(ly->qc1); free(ly->maxk); free(ly->risk); free(ly->mismatch);
    }
    free(e->layers);
    for (int g = 0; g < e->ngroups; g++) {
        free(e->groups[g].cols); free(e->groups[g].rows); free(e->groups[g].wt); free(e->groups[g].bt);
    }
    free(e->groups);
    for (int f = 0; f < e->nfeat; f++) { free(e->pidx[f]); free(e->pval[f]); }
    free(e->E); free(e->acc); free(e->gmax); free(e->eos);
    free(e->x); free(e->tmp); free(e->qkv); free(e->out); free(e->hid);
    free(e->act); free(e->lm_ci); free(e->lm_xv);
    free(e);
}

/* debugging: the residual stream after the last processed token */
EXPORT void we_debug_x(void *ep, double *out) {
    Engine *e = (Engine *)ep;
    memcpy(out, e->x, sizeof(double) * e->d);
}
