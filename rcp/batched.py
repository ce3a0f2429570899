"""Several replies generated together in one llama.cpp context: each decode step feeds one token of every sequence.

On CPU a decode step of one sequence is bound by reading the weights, not by arithmetic, so steps of several
sequences cost little more than one. Measured on this project's 2-core machine (1.5B Q4_K_M, the dateutils task
asked plainly, 253 prompt tokens, 120 steps at temperature 0.8): one sequence 92 ms a step (10.8 tokens/s), two 147 ms
(13.6), three 178 ms (16.8), four 213 ms (18.8). A prompt several replies share is decoded once and its cache cells
shared (``llama_memory_seq_cp``).

Sampling mirrors llama-cpp-python's chat completion defaults (top-k 40, top-p 0.95, min-p 0.05, then the
temperature; greedy at 0), each sequence with its own seeded sampler. A reply ends at an end-of-generation token,
at ``max_tokens``, when ``enough`` says so at a line end, or when ``stop`` is set (the caller gave up).

The context is the one llama-cpp-python's ``Llama`` owns, loaded with room for ``MAX_SEQUENCES`` sequences in one
unified cache (``context_params``); ``generate`` clears it before and after, so the next ordinary call re-reads
its prompt instead of trusting a prefix this module overwrote. One call at a time per context (the caller locks).
"""

from __future__ import annotations

import ctypes
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

MAX_SEQUENCES = 4  # sequences one context holds; more asks are generated in groups of this size
TOP_K, TOP_P, MIN_P = 40, 0.95, 0.05  # llama-cpp-python's create_chat_completion defaults


@dataclass
class Reply:
    text: str
    prompt_tokens: int  # prompt tokens decoded for this reply (a prompt shared with an earlier reply: 0)
    completion_tokens: int
    finish: str  # "stop", "length", "enough" or "abandoned"


def context_params(default: Callable[[], Any]) -> Callable[[], Any]:
    """``llama_context_default_params`` with room for ``MAX_SEQUENCES`` sequences in one cache of ``n_ctx`` cells
    (a split cache would give each sequence only ``n_ctx / MAX_SEQUENCES``)."""

    def params() -> Any:
        p = default()
        p.n_seq_max = MAX_SEQUENCES
        p.kv_unified = True
        return p

    return params


def _sampler(lib: Any, temperature: float, seed: int) -> Any:
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    if temperature <= 0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        return chain
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(TOP_K))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(TOP_P, 1))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(MIN_P, 1))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(temperature))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
    return chain


class _Sequence:
    def __init__(self, seq_id: int, pos: int, sampler: Any, prompt_tokens: int) -> None:
        self.seq_id = seq_id
        self.pos = pos  # the position of its next token
        self.sampler = sampler
        self.prompt_tokens = prompt_tokens
        self.logits = -1  # index of its logits in the last decoded batch (-1: its last output)
        self.out = bytearray()
        self.tokens = 0
        self.finish = ""


def generate(llama: Any, prompts: Sequence[Sequence[int]], temperatures: Sequence[float], *, max_tokens: int,
             enough: Callable[[str], bool] | None = None, stop: threading.Event | None = None,
             seed: int | None = None) -> list[Reply]:
    """One reply per prompt (token lists, chat template applied), generated together; at most ``MAX_SEQUENCES``
    prompts. Replies end at ``max_tokens``, or sooner where the context cells their prompts leave run out (shared
    evenly; ``fits`` says when they need not)."""
    import llama_cpp

    lib = llama_cpp.llama_cpp
    if not 0 < len(prompts) <= MAX_SEQUENCES or len(prompts) != len(temperatures):
        raise ValueError(f"generate takes 1 to {MAX_SEQUENCES} prompts with a temperature each")
    ctx, vocab = llama._ctx.ctx, llama._model.vocab
    mem = lib.llama_get_memory(ctx)
    n_batch = llama.n_batch
    rng = random.Random(seed)
    batch = lib.llama_batch_init(max(n_batch, len(prompts)), 0, MAX_SEQUENCES)
    seqs: list[_Sequence] = []
    lib.llama_memory_clear(mem, True)
    llama.n_tokens = 0  # the high-level cache no longer holds what it thinks
    try:
        first_of: dict[tuple[int, ...], _Sequence] = {}
        for s, (prompt, temperature) in enumerate(zip(prompts, temperatures, strict=True)):
            key = tuple(prompt)
            sampler = _sampler(lib, temperature, rng.randrange(1, 2**31))
            if key in first_of:  # the same prompt: share its cells
                lib.llama_memory_seq_cp(mem, first_of[key].seq_id, s, -1, -1)
                seq = _Sequence(s, len(prompt), sampler, 0)
            else:
                seq = _Sequence(s, len(prompt), sampler, len(prompt))
                for start in range(0, len(prompt), n_batch):
                    chunk = prompt[start:start + n_batch]
                    batch.n_tokens = len(chunk)
                    for i, token in enumerate(chunk):
                        batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, start + i, 1
                        batch.seq_id[i][0] = s
                        batch.logits[i] = start + i == len(prompt) - 1
                    _decode(lib, ctx, batch)
                first_of[key] = seq
            seqs.append(seq)
        # A prompt decoded before another's was decoded has lost its logits (each decode replaces them): sample
        # its first token again from a decode of its last prompt token alone.
        _refresh_first(lib, ctx, mem, batch, seqs, first_of, prompts)
        # As llama-cpp-python caps one reply at the cells its prompt leaves, the replies share what is left.
        limit = min(max_tokens, (llama.n_ctx() - sum(map(len, first_of))) // len(seqs))
        live = list(seqs)
        while live:
            stepped = []
            for seq in live:
                token = lib.llama_sampler_sample(seq.sampler, ctx, seq.logits)
                if stop is not None and stop.is_set():
                    seq.finish = "abandoned"
                elif lib.llama_vocab_is_eog(vocab, token):
                    seq.finish = "stop"
                else:
                    text = _piece(lib, vocab, token)
                    seq.out += text
                    seq.tokens += 1
                    if seq.tokens >= limit:
                        seq.finish = "length"
                    elif enough is not None and b"\n" in text and enough(seq.out.decode("utf-8", errors="replace")):
                        seq.finish = "enough"
                    else:
                        stepped.append((seq, token))
            live = [seq for seq, _ in stepped]
            if not live:
                break
            batch.n_tokens = len(stepped)
            for i, (seq, token) in enumerate(stepped):
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, seq.pos, 1, True
                batch.seq_id[i][0] = seq.seq_id
                seq.pos += 1
                seq.logits = i
            _decode(lib, ctx, batch)
        return [Reply(text=seq.out.decode("utf-8", errors="ignore"), prompt_tokens=seq.prompt_tokens,
                      completion_tokens=seq.tokens, finish=seq.finish) for seq in seqs]
    finally:
        for seq in seqs:
            lib.llama_sampler_free(seq.sampler)
        lib.llama_batch_free(batch)
        lib.llama_memory_clear(mem, True)
        llama.n_tokens = 0


def _refresh_first(lib: Any, ctx: Any, mem: Any, batch: Any, seqs: list[_Sequence],
                   first_of: dict[tuple[int, ...], _Sequence], prompts: Sequence[Sequence[int]]) -> None:
    """Give every sequence the logits of its prompt's last token in one decode (positions re-decoded in place)."""
    if len(first_of) == 1:
        return  # one prompt: its last decode's logits are every sequence's
    batch.n_tokens = len(seqs)
    for i, seq in enumerate(seqs):
        last = len(prompts[seq.seq_id]) - 1
        lib.llama_memory_seq_rm(mem, seq.seq_id, last, -1)
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = prompts[seq.seq_id][last], last, 1, True
        batch.seq_id[i][0] = seq.seq_id
        seq.logits = i
    _decode(lib, ctx, batch)


def _piece(lib: Any, vocab: Any, token: int) -> bytes:
    """The bytes of a token (part of a UTF-8 character, maybe; special tokens render empty)."""
    buf = ctypes.create_string_buffer(64)
    n = lib.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    if n < 0:  # -n bytes needed
        buf = ctypes.create_string_buffer(-n)
        n = lib.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    return buf.raw[:max(n, 0)]


def _decode(lib: Any, ctx: Any, batch: Any) -> None:
    rc = lib.llama_decode(ctx, batch)
    if rc != 0:
        # 1: no room in the cache for the batch; negative: an error inside llama.cpp.
        raise RuntimeError(f"llama_decode returned {rc}" + (" (the context is full)" if rc == 1 else ""))


def fits(prompt_tokens: Sequence[int], replies: int, max_tokens: int, n_ctx: int) -> bool:
    """Whether the distinct prompts and ``replies`` replies of up to ``max_tokens`` fit ``n_ctx`` cache cells."""
    return sum(prompt_tokens) + replies * max_tokens <= n_ctx
