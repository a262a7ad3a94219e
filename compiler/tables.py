"""The constant cross-attention memory: byte tables every program shares (no program-specific
content, so nothing here is precomputed from a program's inputs). Row r of the memory is a byte
token; a lookup head finds row r exactly with the parabolic key (2r, -r^2)."""

R_AND = 0            # 256*a + b  -> a & b
R_POP = 1 << 16      # a          -> popcount(a)
R_CTZ = R_POP + 256  # a          -> trailing zeros of the byte a (8 for 0)
R_POW = R_CTZ + 256  # x          -> 2 ** (x mod 8), x in 0..256
R_FLOOR = R_POW + 257  # the floor table: rows R_FLOOR + i, i = 0..1023, for floor(x / 256) with x < 2**18
FLOOR_ROWS = 1024
SIZE = R_FLOOR + FLOOR_ROWS


def _ctz8(a):
    return 8 if a == 0 else (a & -a).bit_length() - 1


def memory_ids():
    rows = [a & b for a in range(256) for b in range(256)]
    rows += [bin(a).count("1") for a in range(256)]
    rows += [_ctz8(a) for a in range(256)]
    rows += [1 << (x % 8) for x in range(257)]
    rows += [0] * FLOOR_ROWS          # the floor table's value is the row index itself
    assert len(rows) == SIZE
    return rows
