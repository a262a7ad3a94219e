"""Offline tooling around the model: C and WAT to wasm, and wasmtime as the oracle.
(Not loaded as remote code: it needs ziglang and wasmtime.)"""
import subprocess
import sys
import tempfile
from pathlib import Path

ZIG_FLAGS = ["--target=wasm32-freestanding", "-mcpu=mvp", "-fno-sanitize=undefined", "-nostdlib",
             "-fno-builtin", "-Wl,--no-entry", "-Wl,--export-dynamic", "-g0"]
SPECTEST_FUNCS = [("print", ()), ("print_i32", ("i32",)), ("print_i64", ("i64",)), ("print_f32", ("f32",)),
                  ("print_f64", ("f64",)), ("print_i32_f32", ("i32", "f32")), ("print_f64_f64", ("f64", "f64"))]


def compile_c(path, opt="-O2", cpu="mvp", extra=()):
    """C source -> wasm bytes with zig's clang (pip install ziglang)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wasm"
        flags = [f if f != "-mcpu=mvp" else f"-mcpu={cpu}" for f in ZIG_FLAGS]
        cmd = [sys.executable, "-m", "ziglang", "cc", *flags, opt, *extra, "-o", str(out), str(path)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"C compilation failed:\n{r.stderr.strip()}")
        return out.read_bytes()


def wat_to_wasm(text):
    import wasmtime
    try:
        return wasmtime.wat2wasm(text)
    except Exception as e:
        raise ValueError(f"malformed WAT: {str(e).strip().splitlines()[0]}") from None


def load_wasm(path, opt="-O2"):
    """A .c, .wat or .wasm file -> wasm bytes."""
    path = Path(path)
    if path.suffix == ".c":
        return compile_c(path, opt)
    if path.suffix == ".wat":
        return wat_to_wasm(path.read_text())
    return path.read_bytes()


class Wasmtime:
    """One wasmtime instance (spectest imports defined), to compare results and traps with."""

    def __init__(self, wasm):
        import wasmtime as wt
        self.wt = wt
        self.store = wt.Store(wt.Engine())
        linker = wt.Linker(self.store.engine)
        for name, params in SPECTEST_FUNCS:
            ft = wt.FuncType([getattr(wt.ValType, p)() for p in params], [])
            linker.define(self.store, "spectest", name, wt.Func(self.store, ft, lambda *a: None))
        for name, ty, v in [("global_i32", "i32", 666), ("global_i64", "i64", 666),
                            ("global_f32", "f32", 666.6), ("global_f64", "f64", 666.6)]:
            gt = wt.GlobalType(getattr(wt.ValType, ty)(), False)
            linker.define(self.store, "spectest", name, wt.Global(self.store, gt, v))
        linker.define(self.store, "spectest", "table",
                      wt.Table(self.store, wt.TableType(wt.ValType.funcref(), wt.Limits(10, 20)), None))
        linker.define(self.store, "spectest", "memory", wt.Memory(self.store, wt.MemoryType(wt.Limits(1, 2))))
        self.instance = linker.instantiate(self.store, wt.Module(self.store.engine, wasm))

    def call(self, func, args):
        """-> ('result', [signed ints]) or ('trap', message)."""
        f = self.instance.exports(self.store)[func]
        try:
            r = f(self.store, *args)
        except self.wt.Trap as e:
            return "trap", trap_message(e)
        r = [] if r is None else (list(r) if isinstance(r, (list, tuple)) else [r])
        return "result", r


def trap_message(e):
    """wasmtime's trap -> the message without its 'wasm trap: ' prefix and backtrace."""
    text = str(e.message if hasattr(e, "message") else e)
    for line in text.splitlines():
        if "wasm trap: " in line:
            return line.split("wasm trap: ", 1)[1].strip()
    return text.splitlines()[0].strip()
