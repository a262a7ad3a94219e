"""A computation graph of named quantities, the source the weights are compiled from.

Every residual dimension is a `Dim` with a name. A `Lin` is an affine expression over dims; it
costs nothing (the projections that read it apply its coefficients). Three kinds of node make
new dims:
  * embedding features: a function of the token id (or the position),
  * attention heads (hard-max, sum or cross) whose q, k, v are pairs of Lins,
  * FFN units: sums of gated-ReLU neurons  coef * relu(gate) * up  with gate and up Lins.
Nodes are placed as soon as their inputs exist (stage 0 = embedding, attention of layer l =
stage 2l-1, its FFN = stage 2l); dims are written once, so `d_model` is the number of dims.
All coefficients are integers and every quantity an exact integer, checked by the evaluator.
"""
from dataclasses import dataclass, field


class Dim:
    __slots__ = ("name", "stage", "index", "kind")

    def __init__(self, name, stage, index, kind):
        self.name, self.stage, self.index, self.kind = name, stage, index, kind

    def __repr__(self):
        return f"Dim({self.name}@{self.stage})"


class Lin:
    """An affine expression sum(c * dim) + const."""
    __slots__ = ("terms", "const")

    def __init__(self, terms=None, const=0):
        self.terms = dict(terms or {})
        self.const = const

    @staticmethod
    def of(x):
        if isinstance(x, Lin):
            return x
        if isinstance(x, Dim):
            return Lin({x: 1})
        if isinstance(x, int):
            return Lin(const=x)
        raise TypeError(f"cannot make an expression of {x!r}")

    def __add__(self, other):
        other = Lin.of(other)
        terms = dict(self.terms)
        for d, c in other.terms.items():
            terms[d] = terms.get(d, 0) + c
        return Lin({d: c for d, c in terms.items() if c}, self.const + other.const)

    __radd__ = __add__

    def __neg__(self):
        return Lin({d: -c for d, c in self.terms.items()}, -self.const)

    def __sub__(self, other):
        return self + (-Lin.of(other))

    def __rsub__(self, other):
        return Lin.of(other) - self

    def __mul__(self, k):
        if not isinstance(k, int):
            raise TypeError("expressions are scaled by integers only")
        return Lin({d: c * k for d, c in self.terms.items() if c * k}, self.const * k)

    __rmul__ = __mul__

    @property
    def stage(self):
        return max((d.stage for d in self.terms), default=0)

    def __repr__(self):
        parts = [f"{c}*{d.name}" for d, c in self.terms.items()]
        return " + ".join(parts + [str(self.const)])


def lin(x):
    return Lin.of(x)


@dataclass
class Head:
    name: str
    mode: str                 # 'hardmax' | 'sum' | 'cross'
    q: tuple
    k: tuple
    v: tuple
    outs: tuple               # two Dims
    layer: int


@dataclass
class Neuron:
    gate: Lin
    up: Lin
    coef: int
    out: Dim
    layer: int


@dataclass
class Graph:
    dims: list = field(default_factory=list)
    embeds: list = field(default_factory=list)     # (Dim, fn(token_id) -> int)
    positions: list = field(default_factory=list)  # (Dim, 't' | 't2')
    heads: list = field(default_factory=list)
    neurons: list = field(default_factory=list)
    names: dict = field(default_factory=dict)

    def _dim(self, name, stage, kind):
        if name in self.names:
            raise ValueError(f"quantity {name!r} defined twice")
        d = Dim(name, stage, len(self.dims), kind)
        self.dims.append(d)
        self.names[name] = d
        return d

    # ---- nodes ----------------------------------------------------------------------------
    def embed(self, name, fn):
        d = self._dim(name, 0, "embed")
        self.embeds.append((d, fn))
        return lin(d)

    def position(self, name, feature):
        d = self._dim(name, 0, "position")
        self.positions.append((d, feature))
        return lin(d)

    def head(self, name, mode, q=(0, 0), k=(0, 0), v=(0, 0)):
        q, k, v = tuple(map(lin, q)), tuple(map(lin, k)), tuple(map(lin, v))
        deps = [e.stage for e in (*q, *k, *v)]
        if mode == "cross" and any(e.stage for e in (*k, *v)):
            raise ValueError(f"cross head {name}: keys and values must be embedding features")
        s = max(deps)
        layer = (s + 1) // 2 + 1
        outs = (self._dim(f"{name}.0", 2 * layer - 1, "head"), self._dim(f"{name}.1", 2 * layer - 1, "head"))
        self.heads.append(Head(name, mode, q, k, v, outs, layer))
        return lin(outs[0]), lin(outs[1])

    def ffn(self, name, neurons):
        """neurons: [(coef, gate, up)]; the new dim is sum(coef * relu(gate) * up)."""
        neurons = [(c, lin(g), lin(u)) for c, g, u in neurons]
        s = max(max(g.stage, u.stage) for _, g, u in neurons)
        layer = s // 2 + 1
        out = self._dim(name, 2 * layer, "ffn")
        for c, g, u in neurons:
            self.neurons.append(Neuron(g, u, c, out, layer))
        return lin(out)

    @property
    def n_layers(self):
        return max([h.layer for h in self.heads] + [n.layer for n in self.neurons])
