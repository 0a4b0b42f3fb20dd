"""A real llama.cpp server for the suite: a tiny random-weight llama model written with `gguf`, served by `xllamacpp`.

No model is downloaded: `write_tiny_model` builds a byte-level BPE vocabulary by hand (every byte, plus merged tokens
that straddle JSON structure such as `":"`, `","` and `}]`) and random weights. Grammar-constrained decoding still
makes every answer schema-valid JSON, token by token, from real server code. `LlamaServer` runs llama.cpp's C++ HTTP
server in a child process (this file run as a script), so a test can kill or SIGSTOP it, and stops it by PID.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

#: Merged tokens besides the 256 bytes: JSON structure, escapes and a few words, so deltas straddle boundaries.
MERGED_TOKENS = (
    '":"', '","', '":', '",', '"}', '"]', '}]', '},', '}}', ']}', '{"', '[{', '["', ': ', ', ',
    '\\"', '\\\\', '\\n', '\\u', 'true', 'false', 'null', 'the', ' the', 'ing',
)  # fmt: skip

#: The ChatML template, so the server renders messages as most chat models expect.
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

#: Token types in GGUF (llama_token_type): a normal token and a control token.
NORMAL, CONTROL = 1, 3

#: Seconds the child server lives at most, should the test session never stop it.
DEFAULT_LIFETIME = 900


def byte_symbols() -> list[str]:
    """GPT-2's byte-level alphabet: byte b is written as one printable character (unprintable bytes move past 255)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    symbols, shifted = [], 0
    for b in range(256):
        if b in printable:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


#: The bytes of the default vocabulary: printable ASCII and the whitespace JSON allows. With every byte instead,
#: llama.cpp's grammar also lets the model emit stray UTF-8 continuation bytes, which the server turns into U+FFFD
#: and which then break `maxLength`; `all_bytes=True` gives that vocabulary anyway, for UTF-8 split tests.
ASCII_BYTES = (0x09, 0x0A, 0x0D, *range(0x20, 0x7F))


def build_vocab(*, all_bytes: bool = False) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and BPE merges: the bytes, each merged token with all its prefixes, then ChatML's two."""
    symbols = byte_symbols()
    tokens = list(symbols) if all_bytes else [symbols[b] for b in ASCII_BYTES]
    merges: list[str] = []
    known = set(tokens)
    for text in MERGED_TOKENS:
        spelled = "".join(symbols[b] for b in text.encode())
        for end in range(2, len(spelled) + 1):
            if spelled[:end] not in known:
                merges.append(f"{spelled[: end - 1]} {spelled[end - 1]}")
                tokens.append(spelled[:end])
                known.add(spelled[:end])
    types = [NORMAL] * len(tokens) + [CONTROL, CONTROL]
    return [*tokens, "<|im_start|>", "<|im_end|>"], types, merges


def write_tiny_model(path: Path, *, layers: int = 2, width: int = 64, seed: int = 0, all_bytes: bool = False) -> Path:
    """Write a random-weight llama model (about 400 KB at the defaults) to `path`; the same seed gives the same file.

    Prompts must be ASCII unless `all_bytes` (llama.cpp cannot tokenize a byte missing from the vocabulary).
    """
    import gguf
    import numpy as np

    tokens, types, merges = build_vocab(all_bytes=all_bytes)
    heads, ffn = 4, 2 * width
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(4096)
    writer.add_embedding_length(width)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(width // heads)
    writer.add_file_type(0)  # all F32
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(len(tokens) - 2)
    writer.add_eos_token_id(len(tokens) - 1)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)
    rng = np.random.default_rng(seed)

    def weights(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    ones = np.ones(width, dtype=np.float32)
    writer.add_tensor("token_embd.weight", weights(len(tokens), width))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", weights(len(tokens), width))
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weights(width, width))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weights(ffn, width))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weights(ffn, width))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weights(width, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


class LlamaServer:
    """llama.cpp's server in a child process on 127.0.0.1 (a free port), serving one model; stopped by PID.

    The child exits on its own when its stdin closes (this process died) or after `lifetime` seconds, so no server
    outlives the test session. `kill()`, `pause()` and `resume()` let tests break it on purpose.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 2048,
        n_parallel: int = 4,
        lifetime: int = DEFAULT_LIFETIME,
        startup_timeout: float = 60.0,
    ) -> None:
        self.model_path = model_path
        self.log_path = model_path.with_suffix(f".{time.monotonic_ns()}.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, __file__, str(model_path), str(n_ctx), str(n_parallel), str(lifetime)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        try:
            address = self._read_address(startup_timeout)
            self.base_url = f"{address}/v1"
            self._wait_ready(startup_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read_address(self, timeout: float) -> str:
        """The `http://127.0.0.1:PORT` line the child prints once it listens."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("http://"):
            raise RuntimeError(f"llama.cpp server did not start: {self.log_tail()}")
        return line

    def _wait_ready(self, timeout: float) -> None:
        """Poll `/v1/models` until it answers 200 (the model is loaded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"llama.cpp server not ready: {self.log_tail()}") from None
            time.sleep(0.05)

    def models(self) -> dict[str, Any]:
        """The raw `/v1/models` answer, for comparing with what the SDK makes of it."""
        with urllib.request.urlopen(f"{self.base_url}/models", timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the server: every open connection drops at once."""
        self.process.kill()
        self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets open but sends nothing."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """End the child by PID (SIGCONT first, in case a test left it stopped), SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _serve(model_path: str, n_ctx: int, n_parallel: int, lifetime: int) -> None:
    """Child process: start the server on a free port, print its address, serve until stdin closes or time runs out."""
    import xllamacpp

    signal.alarm(lifetime)  # the default SIGALRM action ends the process
    params = xllamacpp.CommonParams()
    params.model.path = model_path
    params.n_ctx = n_ctx * n_parallel  # llama.cpp splits the context between its slots
    params.n_parallel = n_parallel
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    server = xllamacpp.Server(params)
    print(server.listening_address, flush=True)
    sys.stdin.buffer.read()  # returns at EOF: the parent closed the pipe or died
    os._exit(0)


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
