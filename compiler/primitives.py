"""Small exact building blocks made of gated-ReLU neurons (all inputs are integers).

`when` turns 0/1 flags into a gate shift: adding -GATE * sum(1 - f) to a gate switches a neuron
off unless every flag is 1, so any neuron can be made conditional without another layer.
"""
from .graph import lin

GATE = 1 << 40          # larger than any gate argument the machine forms


def when(*flags):
    return sum((GATE * (lin(f) - 1) for f in flags), lin(0))


def step(g, name, z, c=0, cond=()):
    """[z >= c] for integer z."""
    z = lin(z) - c + when(*cond)
    return g.ffn(name, [(1, z + 1, 1), (-1, z, 1)])


def tent_neurons(d, up=1, cond=()):
    """Neurons of [d == 0] * up for integer d (the tent relu(1-d) - 2 relu(-d) + relu(-1-d))."""
    d = lin(d)
    w = when(*cond)
    return [(1, 1 - d + w, up), (-2, -d + w, up), (1, -1 - d + w, up)]


def equals(g, name, d, cond=(), up=1):
    return g.ffn(name, tent_neurons(d, up, cond))


def gated(g, name, flags, up):
    """up if every flag is 1, else 0 (flags exactly 0/1, |up| < GATE)."""
    return g.ffn(name, [(1, 1 + when(*flags), up)])


def both(g, name, *flags):
    """AND of 0/1 flags."""
    return g.ffn(name, [(1, sum((lin(f) for f in flags), lin(0)) - (len(flags) - 1), 1)])


def member(g, name, x, codes, cond=()):
    """[x in codes] for integer x, as steps over the maximal runs of consecutive codes."""
    codes = sorted(set(codes))
    runs, start = [], None
    for i, c in enumerate(codes):
        if start is None:
            start = c
        if i + 1 == len(codes) or codes[i + 1] != c + 1:
            runs.append((start, c))
            start = None
    x = lin(x)
    w = when(*cond)
    neurons = []
    for lo, hi in runs:
        neurons += [(1, x - lo + 1 + w, 1), (-1, x - lo + w, 1),        # [x >= lo]
                    (-1, x - hi + w, 1), (1, x - hi - 1 + w, 1)]        # - [x >= hi + 1]
    return g.ffn(name, neurons)
