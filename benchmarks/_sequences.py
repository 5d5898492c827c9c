"""speed.py's sequence rows: a bidirectional layer, and variable-length batches against PyTorch's packed sequences.

Per cell and hidden size H, with B sequences of T steps (speed.py: B = 32, T = 64), vocabulary V,
float32, every training step from the zero state (no carried state: a reverse direction has
none to carry), random token ids, Adam (lr 1e-3):

* **bidirectional**: one bidirectional layer over full-length sequences, readout on the 2H
  concatenated output. bptt: ``loss_and_grad`` with loss weights 1/T (mean cross-entropy per
  token); PyTorch: ``nn.RNN`` / ``LSTM`` / ``GRU(bidirectional=True)`` on one-hot input, ``Linear(2H, V)``,
  ``F.cross_entropy``.
* **variable length**: a unidirectional layer, sequence b has ``lengths[b]`` real steps, drawn
  once uniformly from the integers in [T/4, T] (seed fixed), the rest padding. The loss is the
  mean cross-entropy over the real tokens: bptt ``lengths=lengths`` and loss weights
  ``w_tb = B / N`` (N real tokens in the batch, so ``J = (1/B) Σ_b Σ_{t<len_b} w_tb Loss_tb`` is
  that mean); PyTorch ``pack_padded_sequence(..., enforce_sorted=False)`` → module →
  ``pad_packed_sequence(total_length=T)`` → Linear → ``F.cross_entropy`` with the padding
  targets set to ``ignore_index`` (the same mean). Tokens/s counts real tokens only.
  The same row also times both sides on the same windows at full length (no ``lengths``, no
  packing, weights 1/T): bptt's real tokens/s with padding divided by its tokens/s without is
  1.00 if padding steps cost nothing, and N / (T·B) if a padding step costs as much as a real one.

Before timing, each model checks both sides on the same weights and first window (largest
|Δloss| and |Δgrad| over all parameters, both directions). Timing as the other rows of speed.py
(:func:`_shared.time_alternating`): all the row's step functions in turn, idle cool-downs
between blocks, median of the repetitions.
"""

from __future__ import annotations

import gc

import numpy as np
import torch
import torch.nn.functional as F
from _shared import TorchLM, idle, time_alternating  # benchmarks/ is on sys.path when run as a script
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import bptt
from bptt.optim import Adam

__all__ = ["draw_lengths", "report", "run"]

MODELS = {"elman": bptt.Elman, "lstm": bptt.LSTM, "gru": bptt.GRU}
IGNORE = -100  # F.cross_entropy's ignore_index: the target at a padding step
WINDOWS = 8  # distinct (T, B) windows the steps cycle through
LR = 1e-3


def draw_lengths(T: int, B: int, seed: int = 0) -> np.ndarray:
    """Real steps per sequence, ``(B,)`` integers uniform in ``[T // 4, T]``."""
    return np.random.default_rng(seed).integers(T // 4, T + 1, size=B)


class BpttSide:
    """A bptt model, its Adam and the windows: one training step is ``loss_and_grad`` + ``Adam.step``."""

    def __init__(self, model, windows, lengths: np.ndarray | None) -> None:
        T, B = windows[0][0].shape
        self.model, self.windows, self.lengths = model, windows, lengths
        if lengths is None:
            self.w = np.full((T, B), 1.0 / T, np.float32)  # J = mean over the T·B tokens
        else:
            valid = np.arange(T)[:, None] < lengths[None, :]  # (T, B)
            self.w = (valid * (B / valid.sum())).astype(np.float32)  # J = mean over the real tokens
        self.opt = Adam(model.params, LR)
        self.pos = 0

    def loss_and_grad(self, k: int):
        x, y = self.windows[k % len(self.windows)]
        return self.model.loss_and_grad(x, y, None, loss_weights=self.w, lengths=self.lengths)

    def step(self) -> None:
        r = self.loss_and_grad(self.pos)
        self.opt.step(r.grads)
        self.pos += 1


class TorchSide:
    """The same model in ``torch.nn``; with ``lengths``, through packed sequences."""

    def __init__(self, net: TorchLM, windows, lengths: np.ndarray | None) -> None:
        T = windows[0][0].shape[0]
        self.net, self.T = net, T
        self.lengths = None if lengths is None else torch.as_tensor(lengths, dtype=torch.int64)
        self.windows = []
        for x, y in windows:
            y = y.astype(np.int64)
            if lengths is not None:
                y = np.where(np.arange(T)[:, None] < lengths[None, :], y, IGNORE)  # no loss at padding
            self.windows.append((torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y)))
        self.opt = torch.optim.Adam(net.parameters(), lr=LR)
        self.pos = 0

    def loss(self, k: int) -> torch.Tensor:
        x, y = self.windows[k % len(self.windows)]
        net = self.net
        inp = F.one_hot(x, net.vocab).float()  # (T, B, V)
        if self.lengths is None:
            h, _ = net.rnn(inp)
        else:
            packed = pack_padded_sequence(inp, self.lengths, enforce_sorted=False)
            h, _ = pad_packed_sequence(net.rnn(packed)[0], total_length=self.T)  # zeros at padding
        logits = net.out(h)  # (T, B, V)
        return F.cross_entropy(logits.reshape(-1, net.vocab), y.reshape(-1), ignore_index=IGNORE)

    def step(self) -> None:
        self.loss(self.pos).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)  # gradients do not outlive the step (as on the bptt side)
        self.pos += 1


def check(b: BpttSide, t: TorchSide) -> tuple[float, float]:
    """Largest |loss difference| and |gradient difference| on the current weights and the first window."""
    r = b.loss_and_grad(0)
    t.net.zero_grad(set_to_none=True)
    loss = t.loss(0)
    loss.backward()
    g = t.net.named_grads()
    t.net.zero_grad(set_to_none=True)
    return abs(r.loss - float(loss.detach())), max(float(np.abs(r.grads[k] - g[k]).max()) for k in b.model.params)


def _windows(V: int, T: int, B: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    stream = np.random.default_rng(seed + 1).integers(0, V, size=(WINDOWS * T + 1, B)).astype(np.intp)
    return [(stream[k * T : (k + 1) * T], stream[k * T + 1 : (k + 1) * T + 1]) for k in range(WINDOWS)]


def _sides(cell: str, H: int, V: int, windows, lengths, bidirectional: bool, seed: int) -> tuple[BpttSide, TorchSide]:
    model = MODELS[cell](V, H, V, bidirectional=bidirectional, dtype="float32", seed=seed)
    return BpttSide(model, windows, lengths), TorchSide(TorchLM(model, cell), windows, lengths)


def run(cells: list[str], hidden: list[int], B: int, T: int, V: int, timing: dict, seed: int = 0) -> list[dict]:
    """Check and time the bidirectional and variable-length rows; ``timing``: reps, rep_seconds, cooldown."""
    lengths = draw_lengths(T, B, seed)
    windows = _windows(V, T, B, seed)
    real = int(lengths.sum())
    rows = []
    for cell in cells:
        for H in hidden:
            b, t = _sides(cell, H, V, windows, None, True, seed)
            d = check(b, t)
            idle(timing["cooldown"])
            (tb, tt), n = time_alternating([b.step, t.step], **timing)
            rows.append(dict(kind="bi", cell=cell, H=H, B=B, T=T, tb=tb, tt=tt, d_loss=d[0], d_grad=d[1], n=n))
            print(
                f"  {cell:5} H={H:<4} bidirectional  : bptt {T * B / tb:>9,.0f} tok/s, torch {T * B / tt:>9,.0f} "
                f"tok/s, ratio {tt / tb:5.2f}x; |Δloss| {d[0]:.1e}, max |Δgrad| {d[1]:.1e}; steps/rep {n}",
                flush=True,
            )
            del b, t
            gc.collect()

            b, t = _sides(cell, H, V, windows, lengths, False, seed)  # padded / packed
            bf, tf = _sides(cell, H, V, windows, None, False, seed)  # the same models at full length
            d = check(b, t)
            idle(timing["cooldown"])
            (tb, tt, tbf, ttf), n = time_alternating([b.step, t.step, bf.step, tf.step], **timing)
            rows.append(
                dict(kind="var", cell=cell, H=H, B=B, T=T, lengths=lengths, tb=tb, tt=tt, tb_full=tbf, tt_full=ttf)
                | dict(d_loss=d[0], d_grad=d[1], n=n)
            )
            print(
                f"  {cell:5} H={H:<4} variable length: bptt {real / tb:>9,.0f} real tok/s, torch {real / tt:>9,.0f}, "
                f"ratio {tt / tb:5.2f}x; full length: bptt {T * B / tbf:>9,.0f}, torch {T * B / ttf:>9,.0f}; "
                f"|Δloss| {d[0]:.1e}, max |Δgrad| {d[1]:.1e}; steps/rep {n}",
                flush=True,
            )
            del b, t, bf, tf
            gc.collect()
    return rows


def report(rows: list[dict]) -> None:
    """Print the two markdown tables of the sequence rows."""
    if not rows:
        return
    B, T = rows[0]["B"], rows[0]["T"]
    bi = [r for r in rows if r["kind"] == "bi"]
    var = [r for r in rows if r["kind"] == "var"]
    print()
    print(f"Bidirectional, one layer, B = {B}, T = {T}, every sequence full length; tokens/s = T·B / step time.")
    print()
    print("| cell | H | bptt tokens/s | PyTorch tokens/s | bptt / PyTorch | max abs Δloss | max abs Δgrad |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in bi:
        T, B = r["T"], r["B"]
        print(
            f"| {r['cell']} | {r['H']} | {T * B / r['tb']:,.0f} | {T * B / r['tt']:,.0f} | {r['tt'] / r['tb']:.2f}× | "
            f"{r['d_loss']:.1e} | {r['d_grad']:.1e} |"
        )
    if not var:
        return
    lengths = var[0]["lengths"]
    real = int(lengths.sum())
    print()
    print(
        f"Variable length, unidirectional, B = {B}, T = {T}, lengths uniform in [{T // 4}, {T}] "
        f"(min {lengths.min()}, mean {lengths.mean():.1f}, max {lengths.max()}): {real} real tokens of {T * B} "
        f"({real / (T * B):.0%}). Padded / packed columns count real tokens only. 'bptt padded / full' is "
        f"real tokens/s with padding over tokens/s at full length: 1.00 if padding is free, "
        f"{real / (T * B):.2f} if a padding step costs as much as a real one (same for PyTorch's packed / full)."
    )
    print()
    print(
        "| cell | H | bptt padded | PyTorch packed | bptt / PyTorch | bptt full | PyTorch full | "
        "bptt padded / full | PyTorch packed / full | max abs Δloss | max abs Δgrad |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in var:
        T, B = r["T"], r["B"]
        full_b, full_t = T * B / r["tb_full"], T * B / r["tt_full"]
        print(
            f"| {r['cell']} | {r['H']} | {real / r['tb']:,.0f} | {real / r['tt']:,.0f} | {r['tt'] / r['tb']:.2f}× | "
            f"{full_b:,.0f} | {full_t:,.0f} | {real / r['tb'] / full_b:.2f} | {real / r['tt'] / full_t:.2f} | "
            f"{r['d_loss']:.1e} | {r['d_grad']:.1e} |"
        )
