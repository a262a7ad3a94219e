/* Euclid's algorithm with a remainder loop: gcd(1071, 462) = 21.
   Run through the transformer:  python run_wasm.py examples/gcd.c --args 1071 462 */
#define EXPORT(n) __attribute__((export_name(n)))
EXPORT("run") int run(int a, int b) {
    while (b != 0) { int t = a % b; a = b; b = t; }
    return a;
}
