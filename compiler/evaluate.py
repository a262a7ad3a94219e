"""Executor 2 of 3: the computation graph evaluated exactly (Python integers), no weights.

It checks that every quantity stays an integer below 2**53, so the float64 weights compute it
exactly, and that the graph's argmax reproduces the reference trace. A disagreement with the
reference points at the graph; agreement here but not in the transformer points at the weights.
"""
import numpy as np

LIMIT = 1 << 53


class GraphEvaluator:
    def __init__(self, g, logits, memory_ids=()):
        self.g = g
        self.memory_ids = list(memory_ids)
        self.mem_kv = {}
        self.logit_items = sorted(logits.items())
        self.order = []
        for l in range(1, g.n_layers + 1):
            self.order.append(([h for h in g.heads if h.layer == l], [n for n in g.neurons if n.layer == l]))

    @staticmethod
    def ev(expr, x):
        total = expr.const
        for dim, c in expr.terms.items():
            total += c * x[dim.index]
        return total

    def run(self, tokens, n_prompt):
        """Predicted next token at every position from n_prompt-1 on."""
        g, ev = self.g, self.ev
        kv = {id(h): [] for h in g.heads}
        preds = []
        for t, tok in enumerate(tokens):
            x = [0] * len(g.dims)
            for dim, fn in g.embeds:
                x[dim.index] = fn(tok)
            for dim, feat in g.positions:
                x[dim.index] = t if feat == "t" else t * t
            for heads, neurons in self.order:
                outs = []
                for h in heads:
                    if h.mode == "cross":
                        outs.append((h, self.cross(h, (ev(h.q[0], x), ev(h.q[1], x)))))
                        continue
                    k = (ev(h.k[0], x), ev(h.k[1], x))
                    v = (ev(h.v[0], x), ev(h.v[1], x))
                    kv[id(h)].append((k, v))
                    q = (ev(h.q[0], x), ev(h.q[1], x))
                    best, val = None, (0, 0)
                    for kk, vv in kv[id(h)]:
                        s = q[0] * kk[0] + q[1] * kk[1]
                        self._small(s, h.name)
                        if best is None or s >= best:
                            best, val = s, vv
                    outs.append((h, val))
                for h, val in outs:
                    x[h.outs[0].index] += val[0]
                    x[h.outs[1].index] += val[1]
                acc = {}
                for n in neurons:
                    gate, up = ev(n.gate, x), ev(n.up, x)
                    self._small(gate, n.out.name)
                    if gate > 0:
                        self._small(up, n.out.name)
                        term = n.coef * gate * up
                        self._small(term, n.out.name + " (one neuron's contribution)")
                        acc[n.out.index] = acc.get(n.out.index, 0) + term
                for i, v in acc.items():
                    x[i] += v
            for i, v in enumerate(x):
                self._small(v, g.dims[i].name)
            if t >= n_prompt - 1:
                best, arg = None, None
                for tok_id, expr in self.logit_items:
                    s = ev(expr, x)
                    if best is None or s > best:
                        best, arg = s, tok_id
                self._small(best, "logit")
                preds.append(arg)
        return preds

    def cross(self, h, q):
        """Hard-max over the constant memory rows (exact int64 arithmetic; values are < 2**53)."""
        if id(h) not in self.mem_kv:
            rows = []
            for i, tok in enumerate(self.memory_ids):
                x = [0] * len(self.g.dims)
                for dim, fn in self.g.embeds:
                    x[dim.index] = fn(tok)
                for dim, feat in self.g.positions:
                    x[dim.index] = i if feat == "t" else i * i
                rows.append([self.ev(e, x) for e in (*h.k, *h.v)])
            arr = np.array(rows, dtype=np.int64)
            self.mem_kv[id(h)] = arr
        arr = self.mem_kv[id(h)]
        for v in q:
            self._small(v, h.name)
        s = arr[:, 0] * q[0] + arr[:, 1] * q[1]
        self._small(int(np.abs(s).max()), h.name)
        j = len(s) - 1 - int(np.argmax(s[::-1] == s.max()))
        return int(arr[j, 2]), int(arr[j, 3])

    @staticmethod
    def _small(v, what):
        if not -LIMIT < v < LIMIT:
            raise OverflowError(f"{what} = {v} is not exact in float64")
