"""What the benchmark scripts share: bptt's language model in PyTorch (same weights), step and latency timers.

Imported by the benchmark scripts after they have set the thread-count variables.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TorchLM", "idle", "latency_bptt", "latency_torch", "openblas_core", "time_alternating", "timed"]


def openblas_core() -> str:
    """The OpenBLAS kernel set NumPy is running (e.g. ``Haswell`` for AVX2, ``SkylakeX`` for AVX-512).

    ``OPENBLAS_CORETYPE`` overrides OpenBLAS's own choice from the CPU; PyTorch's oneDNN and
    MKL ignore it. Read through OpenBLAS's ``get_corename`` from the library NumPy loaded.
    """
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "openblas" in line and line.rstrip().endswith(".so")}
        for path in sorted(libs):
            lib = ctypes.CDLL(path)
            for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename"):
                if hasattr(lib, name):
                    fn = getattr(lib, name)
                    fn.restype = ctypes.c_char_p
                    return fn().decode()
    except OSError:
        pass
    return "unknown"


class TorchLM(torch.nn.Module):
    """The same network in PyTorch: one-hot input → RNN → Linear, weights copied from bptt.

    A bidirectional bptt layer becomes ``bidirectional=True``: its ``*_reverse`` parameters are
    torch's ``*_l0_reverse`` weights, and the Linear reads the ``2H`` concatenated output.
    """

    def __init__(self, model, cell: str) -> None:
        super().__init__()
        V, H = model.input_size, model.specs[0].hidden_size
        self.tails = ("", "_reverse") if model.specs[0].bidirectional else ("",)
        kind = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = kind(V, H, num_layers=1, bidirectional=len(self.tails) == 2)
        self.out = torch.nn.Linear(H * len(self.tails), V)
        P = {k: torch.tensor(v) for k, v in model.params.items()}
        bias = "b_h" if cell == "elman" else "b"
        with torch.no_grad():
            for tail in self.tails:
                getattr(self.rnn, f"weight_ih_l0{tail}").copy_(P["V" + tail])
                getattr(self.rnn, f"weight_hh_l0{tail}").copy_(P["W" + tail])
                getattr(self.rnn, f"bias_ih_l0{tail}").copy_(P[bias + tail])
                bias_hh = getattr(self.rnn, f"bias_hh_l0{tail}")
                bias_hh.zero_()
                if cell == "gru":
                    bias_hh[2 * H :].copy_(P["b_hn" + tail])
            self.out.weight.copy_(P["U"])
            self.out.bias.copy_(P["b_y"])
        self.vocab = V
        self.cell = cell

    def forward(self, ids, state):
        h, state = self.rnn(F.one_hot(ids, self.vocab).float(), state)
        return self.out(h), state

    def named_grads(self) -> dict[str, np.ndarray]:
        """Gradients under bptt's parameter names."""
        g = {n: p.grad.numpy() for n, p in self.named_parameters()}
        H = self.rnn.hidden_size
        out = {"U": g["out.weight"], "b_y": g["out.bias"]}
        for tail in self.tails:
            out["V" + tail] = g[f"rnn.weight_ih_l0{tail}"]
            out["W" + tail] = g[f"rnn.weight_hh_l0{tail}"]
            out[("b_h" if self.cell == "elman" else "b") + tail] = g[f"rnn.bias_ih_l0{tail}"]
            if self.cell == "gru":
                out["b_hn" + tail] = g[f"rnn.bias_hh_l0{tail}"][2 * H :]
        return out


def timed(step: Callable[[], object], n: int) -> float:
    """Seconds per step over ``n`` consecutive steps."""
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def idle(seconds: float) -> None:
    """Let the other library's worker threads go idle before the next block.

    OpenBLAS worker threads keep spinning for about 0.1 s after each NumPy product; a
    PyTorch block started during that time competes with them for the 2 cores.
    """
    time.sleep(seconds)


def time_alternating(
    steps: Sequence[Callable[[], object]], reps: int, rep_seconds: float, cooldown: float
) -> tuple[list[float], list[int]]:
    """Median seconds per step of each of ``steps``, timed in turn (A B C A B C …); and the steps per repetition.

    Two warm-up steps each (first-step allocations, PyTorch's lazy Adam state, BLAS buffers), whose
    faster one sets how many consecutive steps fit in about ``rep_seconds`` (1 to 200). Every
    block is followed by ``cooldown`` idle seconds.
    """
    counts = []
    for step in steps:
        estimate = min(timed(step, 1) for _ in range(2))
        idle(cooldown)
        counts.append(max(1, min(200, round(rep_seconds / estimate))))
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(reps):
        for step, n, t in zip(steps, counts, times, strict=True):
            t.append(timed(step, n))
            idle(cooldown)
    return [statistics.median(t) for t in times], counts


def latency_bptt(model, n: int) -> float:
    """Seconds per generated token (batch 1, sampling included) through ``bptt.sampling.sample_text``.

    The clock starts after the first token, once the model has been prepared (a
    :class:`bptt.Stepper`) and the one-token prime has run.
    """
    from bptt.sampling import sample_text
    from bptt.vocab import Vocabulary

    vocab = Vocabulary(tuple(chr(0x100 + i) for i in range(model.input_size)))
    stream = sample_text(model, vocab, vocab.tokens[0], n + 1, seed=0)
    next(stream)
    t0 = time.perf_counter()
    for _ in stream:
        pass
    return (time.perf_counter() - t0) / n


@torch.no_grad()
def latency_torch(net, n: int) -> float:
    """Seconds per generated token (batch 1, sampling included) through a torch module call."""
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros((1, 1), dtype=torch.int64)
    state = None
    t0 = time.perf_counter()
    for _ in range(n):
        logits, state = net(x, state)
        p = torch.softmax(logits[0, 0], -1)
        x[0, 0] = int(torch.multinomial(p, 1, generator=gen))
    return (time.perf_counter() - t0) / n
