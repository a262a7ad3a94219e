"""Small WebAssembly programs the tests run through every executor, with their invocations."""
I32_BINARY = ("add sub mul div_s div_u rem_s rem_u and or xor shl shr_s shr_u rotl rotr "
              "eq ne lt_s lt_u gt_s gt_u le_s le_u ge_s ge_u").split()
I32_UNARY = "eqz clz ctz popcnt".split()

ALU_WAT = "(module " + " ".join(
    f'(func (export "{o}") (param i32 i32) (result i32) (i32.{o} (local.get 0) (local.get 1)))' for o in I32_BINARY
) + " ".join(f'(func (export "{o}") (param i32) (result i32) (i32.{o} (local.get 0)))' for o in I32_UNARY) + ")"

SPECIAL = [0, 1, 2, 7, 31, 32, 33, 255, 256, 65535, 0x7FFFFFFF, -0x80000000, -1, -2]

LOOP_WAT = """(module (func (export "f") (param i32) (result i32) (local i32)
 (loop (local.set 1 (i32.add (local.get 1) (i32.rem_u (local.get 0) (i32.const 7))))
  (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br_if 0 (local.get 0))) (local.get 1)))"""

# memory, data segments, globals, calls, recursion, if/else, select, loads/stores of every width
MIXED_WAT = r"""(module (memory 1) (data (i32.const 8) "\05\00\00\00\ff\80")
 (global $g (mut i32) (i32.const 7)) (global $h (mut i64) (i64.const -3))
 (func $fac (param i32) (result i32)
   (if (result i32) (i32.le_s (local.get 0) (i32.const 1)) (then (i32.const 1))
     (else (i32.mul (local.get 0) (call $fac (i32.sub (local.get 0) (i32.const 1)))))))
 (func (export "f") (param i32) (result i32) (local i32 i64)
   (i32.store (i32.const 16) (i32.add (local.get 0) (i32.load (i32.const 8))))
   (i32.store16 (i32.const 20) (i32.const -2))
   (i64.store (i32.const 24) (global.get $h))
   (if (i32.lt_s (local.get 0) (i32.const 3)) (then (global.set $g (i32.const 9))) (else (global.set $g (i32.const 11))))
   (local.set 1 (select (i32.load8_s (i32.const 12)) (i32.load8_u (i32.const 13)) (local.get 0)))
   (local.set 2 (i64.load (i32.const 24)))
   (i32.add (i32.add (call $fac (local.get 0)) (global.get $g))
     (i32.add (i32.add (local.get 1) (i32.load16_u (i32.const 20)))
              (i32.add (i32.load16_s (i32.const 20)) (i32.wrap_i64 (local.get 2))))))
 (func (export "oob") (param i32) (result i32) (i32.load (local.get 0)))
 (func (export "unreach") (result i32) (unreachable))
 (func (export "deep") (param i32) (result i32) (call 5 (i32.add (local.get 0) (i32.const 1))))
 (func (export "div0") (param i32) (result i32) (i32.div_u (i32.const 1) (local.get 0))))"""
