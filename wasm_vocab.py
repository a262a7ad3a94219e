"""The token vocabulary and the micro-instruction set: the one table both the load-time lowering
(`wasm_lowering.py`), the reference interpreter and the weight compiler read.

A run is a sequence of *records*. A record starts with a marker token and its payload bytes follow;
the position of a token inside its record is its *offset* (the marker has offset 0).

Prompt records (written by the tokenizer at load time):
    INSTR op sa1 sa0 sr1 sr0 x3 x2 x1 x0 y3 y2 y1 y0    one per micro-instruction, in pc order
then records shaped exactly like trace records, of micro-instructions that only the prompt uses:
    PC_g v3 v2 v1 v0 (or 8 bytes)   GINIT: the initial value of a global
    PC_d b b b ...                  DATA: a data segment, its bytes from address x on
    PC_m p3 p2 p1 p0                MEMSIZE: linear memory size in pages
    PC_e f3 f2 f1 f0                ENTER: the root frame base; generation starts after it
Trace records (generated, one per executed micro-instruction):
    PC_p [payload]            payload: a value (4 or 8 bytes, most significant first), the bytes a
                              store writes (most significant first), or a new frame base (4 bytes)
    PC_p TRAP_k EOS           a trap
    PC_halt EOS               the end of a run
Multi-byte numbers are big-endian inside a record so that the model can emit them most significant
byte first (each byte is then a floor division, which the output layer computes exactly).
"""

N_BYTE = 256
EOS = 256
INSTR = 257
TRAP_BASE = 258
TRAPS = (
    "wasm `unreachable` instruction executed",
    "integer divide by zero",
    "integer overflow",
    "out of bounds memory access",
    "call stack exhausted",
    "indirect call type mismatch",
    "undefined element: out of bounds table access",
    "uninitialized element",
)
TRAP_INDEX = {name: i for i, name in enumerate(TRAPS)}
PC_BASE = TRAP_BASE + len(TRAPS)
N_PC = 4096                      # the largest micro-program the vocabulary can address
VOCAB_SIZE = PC_BASE + N_PC

INSTR_LEN = 14                   # tokens per INSTR record; instruction p ends at position 14p + 13
SLOT_BIAS = 1 << 15              # sa / sr are stored biased so that negative frame slots fit 16 bits
MAX_PAGES = 512                  # linear memory cap: byte addresses stay below 2**25 (exact parabolic keys)
FB_LIMIT = 1 << 18               # a frame base beyond this traps with "call stack exhausted"


def pc_token(pc):
    return PC_BASE + pc


def trap_token(name):
    return TRAP_BASE + TRAP_INDEX[name]


# ---- the micro-instruction set -------------------------------------------------------------
# kind: 'value'  writes a value of `width` bytes into slot sr (frame-relative; absolute for
#                GSET/GINIT)
#       'load'   a value read from linear memory at (value of slot sa) + x
#       'store'  writes `width` bytes to linear memory at address (value of slot sa) + x
#       'frame'  writes a new frame base (RET also writes the return pc first: 2 + 4 bytes)
#       'jump'   no payload; only changes the pc
#       'prompt' records the tokenizer writes into the prompt (data segments, memory size)
# Operands: a = slot sa, b = slot sa+1, c = slot sa+2 (frame-relative unless the op says absolute).
# Immediates: x (32 bits), y (32 bits). `width` is the payload length in bytes.
class MicroOp:
    __slots__ = ("name", "code", "kind", "width")

    def __init__(self, name, code, kind, width):
        self.name, self.code, self.kind, self.width = name, code, kind, width

    def __repr__(self):
        return f"MicroOp({self.name})"


_SPECS = [
    ("HALT", "jump", 0), ("UNREACHABLE", "jump", 0),
    ("TRAP", "jump", 0),          # traps with TRAPS[x]
    ("CHKOVF", "jump", 0),        # traps "integer overflow" if a == INT32_MIN and b == -1
    ("JUMP", "jump", 0), ("JZ", "jump", 0), ("JNZ", "jump", 0),          # a = condition, y = target
    ("BRTABLE", "jump", 0),       # to y + min(a, x): a jump table of x + 1 entries follows
    ("STORE8", "store", 1), ("STORE16", "store", 2), ("STORE32", "store", 4), ("STORE64", "store", 8),
    ("ENTER", "frame", 4),        # prompt only: the root frame base
    ("CALL", "frame", 4),         # x = frame delta, y = callee entry pc
    ("CALLI", "frame", 4),        # call_indirect: like CALL, then to y + min(index, sr) (a dispatch table);
                                  # the index is read at slot -1 of the new frame (its header slot)
    ("RET", "frame", 6),          # return pc (2 bytes) and the caller's frame base, from the header
    ("MEMSIZE", "prompt", 4),     # memory size in pages
    ("GROW", "memsize", 4),       # memory.grow by a pages, up to x pages: the new memory size
    ("DATA", "prompt", 0),        # a data segment: its bytes follow, from address x on
    ("LOAD32", "load", 4), ("LOAD8_S", "load", 4), ("LOAD8_U", "load", 4),
    ("LOAD16_S", "load", 4), ("LOAD16_U", "load", 4), ("LOAD64", "load", 8),
    ("LOAD64_8S", "load", 8), ("LOAD64_8U", "load", 8), ("LOAD64_16S", "load", 8), ("LOAD64_16U", "load", 8),
    ("LOAD64_32S", "load", 8), ("LOAD64_32U", "load", 8),
    # 4-byte values
    ("CONST32", "value", 4), ("GINIT32", "value", 4),
    ("MOVE32", "value", 4), ("LGET32", "value", 4), ("GGET32", "value", 4), ("GSET32", "value", 4),
    ("RESULT32", "value", 4),
    ("ADD", "value", 4), ("SUB", "value", 4),
    ("EQ", "value", 4), ("NE", "value", 4),
    ("LT_S", "value", 4), ("LT_U", "value", 4), ("GT_S", "value", 4), ("GT_U", "value", 4),
    ("LE_S", "value", 4), ("LE_U", "value", 4), ("GE_S", "value", 4), ("GE_U", "value", 4),
    ("EQZ", "value", 4), ("SELECT32", "value", 4),
    ("MUL", "value", 4), ("AND", "value", 4), ("OR", "value", 4), ("XOR", "value", 4),
    ("CLZ", "value", 4), ("CTZ", "value", 4), ("POPCNT", "value", 4),
    ("POW2", "value", 4),         # 2 ** (a mod 32)
    ("POW2N", "value", 4),        # 2 ** ((32 - a) mod 32)
    ("ABS", "value", 4),          # |a| (signed a), as u32
    ("CNOT", "value", 4),         # a < 0 ? ~a : a
    ("SFIX", "value", 4),         # a < 0 ? ~c : c
    ("SIGNFIX", "value", 4),      # (a < 0) != (b < 0) ? -c : c
    ("SIGNA", "value", 4),        # a < 0 ? -c : c
    ("MSUB", "value", 4),         # a - b * c            (never negative where it is used)
    ("DIV_U", "value", 4),        # a / b, quotient bytes by long division; traps if b == 0
    ("EXT8S", "value", 4), ("EXT16S", "value", 4),      # sign-extend the low 8 / 16 bits of a
    ("MSIZE", "value", 4),        # memory.size
    ("GROWCHK", "value", 4),      # memory.grow's result: the old size if a more pages fit in x, else -1
    # i64 operators with an i32 result
    ("EQZ64", "value", 4), ("EQ64", "value", 4), ("NE64", "value", 4),
    ("LT_S64", "value", 4), ("LT_U64", "value", 4), ("GT_S64", "value", 4), ("GT_U64", "value", 4),
    ("LE_S64", "value", 4), ("LE_U64", "value", 4), ("GE_S64", "value", 4), ("GE_U64", "value", 4),
    # 8-byte values
    ("CONST64", "value", 8), ("GINIT64", "value", 8),
    ("MOVE64", "value", 8), ("LGET64", "value", 8), ("GGET64", "value", 8), ("GSET64", "value", 8),
    ("RESULT64", "value", 8), ("SELECT64", "value", 8),
    ("EXT64_8S", "value", 8), ("EXT64_16S", "value", 8), ("EXT64_32S", "value", 8),
    ("ADD64", "value", 8), ("SUB64", "value", 8), ("AND64", "value", 8), ("OR64", "value", 8), ("XOR64", "value", 8),
    ("CLZ64", "value", 8), ("CTZ64", "value", 8), ("POPCNT64", "value", 8),
]
# sign extensions: micro-op -> bits of a that are kept
EXTENDS = {"EXT8S": 8, "EXT16S": 16, "EXT64_8S": 8, "EXT64_16S": 16, "EXT64_32S": 32}
# loads: micro-op -> (bytes read, sign-extended)
LOADS = {"LOAD32": (4, False), "LOAD8_S": (1, True), "LOAD8_U": (1, False), "LOAD16_S": (2, True),
         "LOAD16_U": (2, False), "LOAD64": (8, False), "LOAD64_8S": (1, True), "LOAD64_8U": (1, False),
         "LOAD64_16S": (2, True), "LOAD64_16U": (2, False), "LOAD64_32S": (4, True), "LOAD64_32U": (4, False)}
MICRO_OPS = [MicroOp(name, code, kind, width) for code, (name, kind, width) in enumerate(_SPECS)]
OP = {m.name: m for m in MICRO_OPS}
assert len(MICRO_OPS) <= 256


def instr_tokens(code, sa, sr, x, y):
    """The 14 prompt tokens of one micro-instruction."""
    sa_b = sa + SLOT_BIAS
    sr_b = sr + SLOT_BIAS
    if not (0 <= sa_b < 1 << 16 and 0 <= sr_b < 1 << 16):
        raise ValueError("frame slot out of range")
    x &= 0xFFFFFFFF
    y &= 0xFFFFFFFF
    return [INSTR, code, sa_b >> 8, sa_b & 255, sr_b >> 8, sr_b & 255,
            *x.to_bytes(4, "big"), *y.to_bytes(4, "big")]
