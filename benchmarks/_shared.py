"""What both benchmark scripts share: bptt's language model in PyTorch (same weights) and latency timers.

Imported by the benchmark scripts after they have set the thread-count variables.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TorchLM", "latency_bptt", "latency_torch", "openblas_core"]


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
    """The same network in PyTorch: one-hot input → RNN → Linear, weights copied from bptt."""

    def __init__(self, model, cell: str) -> None:
        super().__init__()
        V, H = model.input_size, model.specs[0].hidden_size
        kind = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.rnn = kind(V, H, num_layers=1)
        self.out = torch.nn.Linear(H, V)
        P = {k: torch.tensor(v) for k, v in model.params.items()}
        with torch.no_grad():
            self.rnn.weight_ih_l0.copy_(P["V"])
            self.rnn.weight_hh_l0.copy_(P["W"])
            self.rnn.bias_ih_l0.copy_(P["b_h"] if cell == "elman" else P["b"])
            self.rnn.bias_hh_l0.zero_()
            if cell == "gru":
                self.rnn.bias_hh_l0[2 * H :].copy_(P["b_hn"])
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
        out = {"V": g["rnn.weight_ih_l0"], "W": g["rnn.weight_hh_l0"], "U": g["out.weight"], "b_y": g["out.bias"]}
        out["b_h" if self.cell == "elman" else "b"] = g["rnn.bias_ih_l0"]
        if self.cell == "gru":
            out["b_hn"] = g["rnn.bias_hh_l0"][2 * H :]
        return out


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
