"""WasmTokenizer: a program + an invocation -> prompt ids; generated ids -> a readable trace.

Text prompts are a WAT module followed by a WAST-style invocation, for example
    (module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))
    (invoke "add" (i32.const 2) (i32.const 3))
Binary modules go through `encode_wasm(wasm_bytes, "add", [("i32", 2), ("i32", 3)])`.
Decoding renders one line per executed micro-instruction and ends with `result: ...` or
`trap: ...`; the prompt's own records render as nothing and the trace starts with a newline, so a
pipeline's full text is the prompt followed by the trace.
"""
import re

from transformers import BatchEncoding, PreTrainedTokenizer

try:
    from .wasm_binary import WasmError
    from .wasm_lowering import load_program
    from .wasm_vocab import EOS, INSTR, INSTR_LEN, MICRO_OPS, PC_BASE, SLOT_BIAS, TRAP_BASE, TRAPS, VOCAB_SIZE
except ImportError:
    from wasm_binary import WasmError
    from wasm_lowering import load_program
    from wasm_vocab import EOS, INSTR, INSTR_LEN, MICRO_OPS, PC_BASE, SLOT_BIAS, TRAP_BASE, TRAPS, VOCAB_SIZE

INVOKE = re.compile(r'\(\s*invoke\s+"((?:[^"\\]|\\.)*)"((?:\s*\(\s*i(?:32|64)\.const\s+[^()\s]+\s*\))*)\s*\)\s*$')
ARG = re.compile(r"\(\s*(i32|i64)\.const\s+([^()\s]+)\s*\)")
PROMPT_ONLY = {"GINIT32", "GINIT64", "DATA", "MEMSIZE", "ENTER"}


def parse_int(text, ty):
    """A WAST integer literal (decimal or hex, optional sign and underscores) -> int."""
    t = text.replace("_", "")
    neg = t.startswith("-")
    t = t.lstrip("+-")
    value = int(t, 16) if t.lower().startswith("0x") else int(t)
    value = -value if neg else value
    bits = 32 if ty == "i32" else 64
    if not -(1 << (bits - 1)) <= value < (1 << bits):
        raise ValueError(f"{text} does not fit {ty}")
    return value


def split_prompt(text):
    """'<wat module> (invoke "name" args...)' -> (wat, name, [(type, value)])."""
    m = INVOKE.search(text)
    if not m:
        raise ValueError('the prompt must end with an invocation such as (invoke "f" (i32.const 1))')
    args = [(ty, parse_int(v, ty)) for ty, v in ARG.findall(m.group(2))]
    return text[:m.start()], m.group(1), args


def signed(value, width):
    bits = 8 * width
    return value - (1 << bits) if value >> (bits - 1) else value


class WasmTokenizer(PreTrainedTokenizer):
    model_input_names = ["input_ids"]
    vocab_files_names = {}

    def __init__(self, **kwargs):
        self._names = [f"<0x{b:02X}>" for b in range(256)] + ["</s>", "<instr>"]
        self._names += [f"<trap:{i}>" for i in range(len(TRAPS))]
        self._names += [f"<pc:{p}>" for p in range(VOCAB_SIZE - PC_BASE)]
        self._ids = {n: i for i, n in enumerate(self._names)}
        self.program = None           # the program of the last prompt, to render its trace
        kwargs.setdefault("eos_token", "</s>")
        kwargs.setdefault("pad_token", "</s>")
        super().__init__(**kwargs)

    # ---- vocabulary ---------------------------------------------------------------------
    @property
    def vocab_size(self):
        return VOCAB_SIZE

    def get_vocab(self):
        return dict(self._ids)

    def _convert_token_to_id(self, token):
        return self._ids[token]

    def _convert_id_to_token(self, index):
        return self._names[index]

    def _tokenize(self, text, **kwargs):
        return [self._names[i] for i in self.encode_text(text)]

    def save_vocabulary(self, save_directory, filename_prefix=None):
        return ()

    # ---- encoding -----------------------------------------------------------------------
    def encode_wasm(self, wasm, func, args=()):
        """Prompt ids that run export `func` of a binary module with typed args [(type, value)]."""
        self.program = load_program(bytes(wasm), [(func, list(args))])
        return self.program.prompt_ids()

    def encode_text(self, text):
        wat, func, args = split_prompt(text)
        try:
            import wasmtime
        except ImportError as e:                       # only WAT text needs it
            raise ImportError("WAT prompts need the wasmtime package (pip install wasmtime)") from e
        try:
            wasm = wasmtime.wat2wasm(wat)
        except Exception as e:
            raise WasmError(f"malformed WAT: {str(e).splitlines()[0]}", 0) from None
        return self.encode_wasm(wasm, func, args)

    def __call__(self, text, return_tensors=None, **kwargs):
        texts = [text] if isinstance(text, str) else list(text)
        ids = [self.encode_text(t) for t in texts]
        data = {"input_ids": ids if not isinstance(text, str) else ids[0]}
        if return_tensors:
            data = {"input_ids": ids}
            data["attention_mask"] = [[1] * len(i) for i in ids]
        return BatchEncoding(data, tensor_type=return_tensors)

    def encode(self, text, **kwargs):
        return self.encode_text(text)

    # ---- decoding -----------------------------------------------------------------------
    def decode(self, token_ids, skip_special_tokens=False, **kwargs):
        if hasattr(token_ids, "tolist"):
            token_ids = token_ids.tolist()
        if isinstance(token_ids, int):                 # TextStreamer decodes single ids too
            token_ids = [token_ids]
        if token_ids and isinstance(token_ids[0], list):
            token_ids = token_ids[0]
        lines = list(self._lines(list(token_ids)))
        text = "".join(line for _, _, line in lines)
        if lines and lines[0][1]:                      # the trace starts on a line of its own,
            text = "\n" + text                         # so the pipeline's prompt + trace reads well
        # TextStreamer restarts decoding from the newest token after each newline; holding back
        # the newline of a trailing RESULT line keeps the RESULT records in its window until the
        # `result:` line that lists their values
        if lines and lines[-1][0].startswith("RESULT"):
            text = text[:-1]
        return text

    def _program_ops(self, ids):
        """Micro-op names by pc: from INSTR records in the ids, else from the last prompt."""
        ops = {}
        for i, tok in enumerate(ids):
            if tok == INSTR and i + 1 < len(ids):
                ops[len(ops)] = MICRO_OPS[ids[i + 1]].name if ids[i + 1] < len(MICRO_OPS) else "?"
        if not ops and self.program is not None:
            ops = {pc: ins.op.name for pc, ins in enumerate(self.program.instrs)}
        return ops

    def render(self, ids):
        """Yield text for each complete record; incomplete trailing records yield nothing yet."""
        return (line for _, _, line in self._lines(ids))

    def _lines(self, ids):
        """(micro-op name, first step of an invocation?, line) per rendered record. A line depends
        only on its own record and, for `result:`, the RESULT records before it, so any window that
        starts at a record renders the same lines as the whole trace (what TextStreamer needs)."""
        ops = self._program_ops(ids)
        src = {pc: ins.src for pc, ins in enumerate(self.program.instrs)} if self.program else {}
        results = []
        records, cur = [], None
        for tok in ids:
            if tok == INSTR or tok >= PC_BASE:
                if cur is not None:
                    records.append((cur, True))
                cur = [tok]
            elif cur is not None:
                cur.append(tok)
        if cur is not None:
            records.append((cur, False))
        for rec, complete in records:
            head = rec[0]
            if head == INSTR:
                continue
            pc = head - PC_BASE
            name = ops.get(pc, "?")
            if name == "ENTER":
                results = []
            if name in PROMPT_ONLY:
                continue
            tail = rec[1:]
            first = ops.get(pc - 1) == "ENTER"
            if tail and TRAP_BASE <= tail[0] < TRAP_BASE + len(TRAPS):
                yield name, first, f"trap: {TRAPS[tail[0] - TRAP_BASE]}\n"
                continue
            if name == "HALT":
                if tail and tail[0] == EOS:
                    yield name, first, "result: " + " ".join(results) + "\n"
                continue
            if not complete:
                continue
            payload = bytes(t for t in tail if t < 256)
            value = int.from_bytes(payload, "big") if payload else None
            if name.startswith("RESULT") and value is not None:
                results.append(str(signed(value, len(payload))))
            text = f"pc {pc:<5} {name:<9}"
            if name == "RET" and len(payload) == 6:
                text += f" -> pc {int.from_bytes(payload[:2], 'big')}, frame {int.from_bytes(payload[2:], 'big')}"
            elif name == "CALL":
                text += f" -> frame {value}"
            elif name.startswith("STORE"):
                text += " mem <- " + " ".join(f"{b:02x}" for b in reversed(payload))
            elif value is not None:
                text += f" {signed(value, len(payload))}"
            if pc in src:
                text += f"    ; {src[pc]}"
            yield name, first, text + "\n"
