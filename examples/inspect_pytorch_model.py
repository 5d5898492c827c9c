"""Train an LSTM in PyTorch, import it into bptt, and look inside its backpropagation through time.

PyTorch runs ``nn.LSTM`` as one fused operation: autograd gives the gradient of every weight,
but not the per-step terms it is the sum of, not the Jacobian products that make it vanish or
explode, and input gradients need ``train()`` mode under cuDNN. bptt computes BPTT explicitly,
so once the trained modules are converted (``bptt.from_torch``) all of it can be read off:

1. train ``nn.Embedding → nn.LSTM → nn.Linear`` on the source of a few standard-library modules
   (character level, float32, a few seconds; the source of ``shlex`` is held out);
2. import float64 copies of the modules and check that bptt computes PyTorch's logits and loss;
3. on one held-out window, show
   a. the Jacobian-product map ``‖∂s_t/∂s_k‖`` of the state ``s = (h, c)``   (bptt.jacobian_map),
   b. the per-step terms of ``∂J/∂W`` (PyTorch's ``weight_hh_l0``)           (RNN.trace),
   c. ``‖∂J/∂e_s‖`` per input character, in eval mode                       (bptt.input_sensitivity),

each number checked in float64 against PyTorch autograd, computed the way PyTorch can: the
Jacobians with ``torch.autograd.functional.jacobian``, the per-step terms by unrolling the module
one step at a time with its own copy of ``weight_hh_l0`` per step, the per-pair input gradients
with one backward pass per loss. Every check prints ``check: … max |Δ| = … (ok)``; the script
exits with status 1 if any exceeds 1e-9.

Run ``python examples/inspect_pytorch_model.py`` (needs torch: ``pip install 'bptt[torch]'``);
``--seconds`` sets the training time.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import bptt

TOLERANCE = 1e-9  # float64: bptt and PyTorch autograd agree to rounding, far below this
TRAIN_MODULES = ("argparse", "textwrap", "string")  # standard-library sources to train on
HELD_OUT_MODULE = "shlex"  # never seen in training: the windows analysed come from here


@dataclass(frozen=True)
class Settings:
    seconds: float = 10.0  # wall-clock training budget
    embedding_size: int = 32
    hidden_size: int = 64  # H: the LSTM's state s = (h, c) has 2H numbers
    seq_len: int = 64  # training window length (steps backpropagated per update)
    batch_size: int = 32
    lr: float = 1e-2  # Adam
    window: int = 48  # T of the held-out window analysed in part 3
    seed: int = 0


class Checks:
    """Prints each comparison with PyTorch as one line and remembers whether all passed."""

    def __init__(self, tolerance: float = TOLERANCE) -> None:
        self.tolerance = tolerance
        self.results: list[tuple[str, float]] = []

    def __call__(self, what: str, ours: object, theirs: object) -> float:
        delta = float(np.max(np.abs(np.asarray(ours, dtype=np.float64) - np.asarray(theirs, dtype=np.float64))))
        self.results.append((what, delta))
        print(f"check: {what} max |Δ| = {delta:.1e} ({'ok' if self.passed(delta) else 'FAILED'})")
        return delta

    def passed(self, delta: float) -> bool:
        return delta <= self.tolerance  # False for NaN too

    @property
    def all_passed(self) -> bool:
        return bool(self.results) and all(self.passed(d) for _, d in self.results)


def numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def show(c: str) -> str:
    """A character as it reads in a table: quoted, with newlines and tabs escaped."""
    return repr(c)


# --------------------------------------------------------------------------------------
# 1. Train in PyTorch
# --------------------------------------------------------------------------------------
def stdlib_text(names: tuple[str, ...]) -> str:
    """The source code of standard-library modules, concatenated (no network, no files of ours)."""
    return "\n".join(inspect.getsource(importlib.import_module(name)) for name in names)


def windows(ids: np.ndarray, starts: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-character targets, each (T, B) time-major, for windows starting at ``starts``."""
    rows = ids[starts[:, None] + np.arange(T + 1)]  # (B, T+1)
    return rows[:, :-1].T.copy(), rows[:, 1:].T.copy()


class CharLSTM(nn.Module):
    """``nn.Embedding → nn.LSTM → nn.Linear``, time-major: ids (T, B) → logits (T, B, vocab)."""

    def __init__(self, vocab: int, embedding_size: int, hidden_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding_size)
        self.rnn = nn.LSTM(embedding_size, hidden_size)
        self.linear = nn.Linear(hidden_size, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.rnn(self.embedding(x))[0])


def mean_loss(model: CharLSTM, x: np.ndarray, y: np.ndarray) -> float:
    """Cross-entropy per character (nats), without gradients."""
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        return float(F.cross_entropy(logits.flatten(0, 1), torch.from_numpy(y).flatten()))


def train(model: CharLSTM, ids: np.ndarray, held_out: np.ndarray, s: Settings, rng: np.random.Generator) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    T = s.seq_len
    # Fixed windows to report the loss on, before and after.
    fixed_train = windows(ids, rng.integers(0, ids.size - T - 1, 64), T)
    fixed_held_out = windows(held_out, rng.integers(0, held_out.size - T - 1, 64), T)
    before = mean_loss(model, *fixed_train), mean_loss(model, *fixed_held_out)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < s.seconds:
        x, y = windows(ids, rng.integers(0, ids.size - T - 1, s.batch_size), T)
        loss = F.cross_entropy(model(torch.from_numpy(x)).flatten(0, 1), torch.from_numpy(y).flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        steps += 1
    elapsed = time.perf_counter() - start
    after = mean_loss(model, *fixed_train), mean_loss(model, *fixed_held_out)
    print(f"trained {steps} Adam steps in {elapsed:.1f} s (batch {s.batch_size} × {T} characters, float32)")
    print(f"  loss per character (nats), training text: {before[0]:.3f} → {after[0]:.3f}")
    print(f"  loss per character (nats), held-out {HELD_OUT_MODULE}: {before[1]:.3f} → {after[1]:.3f}")


# --------------------------------------------------------------------------------------
# 3a. The Jacobian-product map
# --------------------------------------------------------------------------------------
def torch_state_jacobian(rnn: nn.LSTM, e: torch.Tensor, t: int, slices: dict[str, slice]) -> np.ndarray:
    """``∂s_t/∂s_0`` (S, S) by torch autograd through the fused module, for s = (h, c) in bptt's order."""
    H = rnn.hidden_size
    zeros = torch.zeros(H, dtype=e.dtype)

    def final_state(h0: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
        _, (h, c) = rnn(e[:t], (h0[None, None], c0[None, None]))
        parts = {"h0": h[0, 0], "c0": c[0, 0]}
        return torch.cat([parts[name] for name in slices])

    dh, dc = torch.autograd.functional.jacobian(final_state, (zeros, zeros))  # each (S, H)
    blocks = {"h0": numpy(dh), "c0": numpy(dc)}
    return np.concatenate([blocks[name] for name in slices], axis=1)


def show_jacobians(model: bptt.RNN, rnn: nn.LSTM, e: torch.Tensor, x: np.ndarray, check: Checks) -> None:
    jm = bptt.jacobian_map(model, x)  # s_t = (h_t, c_t); exact for S ≤ 256
    N, T = jm.norms, x.shape[0]
    S = jm.states.shape[1]
    names = ", ".join(f"{n}: [{sl.start}, {sl.stop})" for n, sl in jm.state_slices.items())
    print(f"\n3a. Jacobian products of the state s_t = (h_t, c_t), S = {S} ({names}); spectral norms")
    gaps = [g for g in (1, 2, 4, 8, 16, 32, 64) if g < T]
    print("    ‖∂s_t/∂s_(t-g)‖, how far back the state at step t still feels an earlier one:")
    print("      t  " + "".join(f"{f'g={g}':>9}" for g in gaps))
    for t in sorted({min(T, r) for r in (T // 4, T // 2, 3 * T // 4, T) if r >= 1}):
        cells = "".join(f"{N[t, t - g]:9.2e}" if g <= t else f"{'':>9}" for g in gaps)
        print(f"    {t:3d}  {cells}".rstrip())
    from_start = N[1:, 0]  # ‖∂s_t/∂s_0‖, t = 1..T
    rate = float(np.exp(np.mean(np.diff(np.log(from_start))))) if T > 1 else float("nan")
    marks = sorted({t for t in (1, 2, 4, 8, 16, 32, 64, T) if t <= T})
    print("    ‖∂s_t/∂s_0‖, what reaches back to the initial state:")
    print("      t  " + "".join(f"{t:9d}" for t in marks))
    print("         " + "".join(f"{N[t, 0]:9.2e}" for t in marks))
    print(f"    on average × {rate:.3f} per step from t = 1 to {T}")
    ts = sorted({t for t in (1, 2, T // 4, T // 2, T) if t >= 1})
    products, ours = {}, np.eye(S)
    for t in range(1, T + 1):
        ours = jm.jacobians[t - 1] @ ours  # ∂s_t/∂s_0 = J_t ∂s_{t-1}/∂s_0
        products[t] = ours
    theirs = {t: torch_state_jacobian(rnn, e, t, jm.state_slices) for t in ts}
    check(
        f"∂s_t/∂s_0 ({S}×{S}) for t in {ts} vs torch.autograd.functional.jacobian:",
        [products[t] for t in ts],
        [theirs[t] for t in ts],
    )
    check(
        "‖∂s_t/∂s_0‖ (spectral) for the same t:",
        [N[t, 0] for t in ts],
        [np.linalg.norm(theirs[t], 2) for t in ts],
    )


# --------------------------------------------------------------------------------------
# 3b. Per-step terms of ∂J/∂W
# --------------------------------------------------------------------------------------
def torch_unrolled_terms(rnn: nn.LSTM, linear: nn.Linear, e: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Each step's term of ``∂J/∂weight_hh_l0`` by PyTorch: the module run one step at a time,
    with its own leaf copy of ``weight_hh_l0`` at every step (autograd can then tell them apart)."""
    T, B = y.shape
    copies = [rnn.weight_hh_l0.detach().clone().requires_grad_() for _ in range(T)]
    state, J = None, 0.0
    for t in range(T):
        out, state = functional_call(rnn, {"weight_hh_l0": copies[t]}, (e[t : t + 1], state))
        J = J + F.cross_entropy(linear(out[0]), y[t], reduction="sum") / B
    J.backward()
    return np.stack([numpy(w.grad) for w in copies])


def show_gradient_terms(
    model: bptt.RNN, mods: CharLSTM, x: np.ndarray, y: np.ndarray, chars: list[str], check: Checks
) -> None:
    T, B = x.shape
    fwd = model.forward(x)
    d_logits = fwd.outputs.copy()  # ∂J/∂z2_t = (p_t − onehot(y_t)) / B for J = mean_b Σ_t Loss_t
    d_logits[np.arange(T)[:, None], np.arange(B), y] -= 1.0
    d_logits /= B
    tr = model.trace(fwd, d_logits, params=["W"])
    terms = tr.terms["W"]  # (T, 4H, H): step k's term dz_k h_{k-1}ᵀ, where W acted
    norms = np.linalg.norm(terms.reshape(T, -1), axis=1)
    print("\n3b. ∂J/∂W = Σ_t term_t, W = weight_hh_l0 (4H × H), J = Σ_t Loss_t on the window")
    grad_norm = np.linalg.norm(tr.grads["W"])
    print(f"    ‖∂J/∂W‖ = {grad_norm:.3e} but Σ_t ‖term_t‖ = {norms.sum():.3e}: the steps' terms partly cancel")
    last = min(10, T)
    share = norms[-last:].sum() / norms.sum()
    print(
        f"    the last {last} steps hold {share:.0%} of Σ_t ‖term_t‖; step 1's term is {norms[0]:g} (W acts on h_0 = 0)"
    )
    print("    largest terms:   step  reads  predicts  ‖term_t‖")
    for t in np.argsort(norms)[::-1][:5]:
        print(f"                    {t + 1:4d}  {show(chars[x[t, 0]]):>5}  {show(chars[y[t, 0]]):>8}  {norms[t]:.3e}")

    # PyTorch: the fused module gives only the sum; the unrolled module gives the terms.
    rnn, linear = mods.rnn, mods.linear
    e = mods.embedding(torch.from_numpy(x))
    yt = torch.from_numpy(y)
    rnn.zero_grad()
    J = F.cross_entropy(linear(rnn(e)[0]).flatten(0, 1), yt.flatten(), reduction="sum") / B
    J.backward()
    check("Σ_t term_t vs fused nn.LSTM's weight_hh_l0.grad:", terms.sum(axis=0), numpy(rnn.weight_hh_l0.grad))
    unrolled = torch_unrolled_terms(rnn, linear, e.detach(), yt)
    check("each term_t vs nn.LSTM unrolled, one weight copy per step:", terms, unrolled)


# --------------------------------------------------------------------------------------
# 3c. Input sensitivity in eval mode
# --------------------------------------------------------------------------------------
def show_input_sensitivity(
    model: bptt.RNN, mods: CharLSTM, x: np.ndarray, y: np.ndarray, chars: list[str], check: Checks
) -> None:
    mods.eval()  # PyTorch's inference mode; bptt needs no mode to differentiate
    sens = bptt.input_sensitivity(model, x, y)
    T = x.shape[0]
    print(f"\n3c. Input sensitivity in eval mode, J = Σ_t Loss_t, with respect to {sens.wrt!r}: the embedding vector")
    print("    e_s = E[:, x_s] that input character s feeds into the LSTM")
    print("    most influential:  step  char   ‖∂J/∂e_s‖  robust z")
    for s in np.argsort(sens.per_step)[::-1][:5]:
        z = sens.z_scores[s]
        print(f"                       {s + 1:4d}  {show(chars[x[s, 0]]):>5}  {sens.per_step[s]:.3e}  {z:+8.2f}")
    flagged = ", ".join(f"{s + 1} {show(chars[x[s, 0]])}" for s in sens.outliers) or "none"
    print(f"    outliers (|z| > {sens.threshold}): {flagged}")
    back = min(8, T)
    row = "  ".join(f"{show(chars[x[s, 0]])} {sens.matrix[T - 1, s]:.1e}" for s in range(T - 1, T - 1 - back, -1))
    print(f"    the last prediction ({show(chars[y[T - 1, 0]])}), ‖∂Loss_T/∂e_s‖ for s = T, T-1, …: {row}")

    # PyTorch autograd in eval mode, w.r.t. the embedding's output tensor.
    e = mods.embedding(torch.from_numpy(x))
    e.retain_grad()
    logits = mods.linear(mods.rnn(e)[0])[:, 0]  # (T, vocab): the window's one sequence
    losses = F.cross_entropy(logits, torch.from_numpy(y[:, 0]), reduction="none")  # Loss_t, (T,)
    losses.sum().backward(retain_graph=True)
    check("∂J/∂e_s, every step, vs autograd (eval mode, retain_grad):", sens.gradients, numpy(e.grad[:, 0]))
    per_pair = np.stack([numpy(torch.autograd.grad(losses[t], e, retain_graph=True)[0][:, 0]) for t in range(T)])
    check(f"∂Loss_t/∂e_s, all {T}×{T} pairs, vs one backward pass per t:", sens.step_gradients, per_pair)


# --------------------------------------------------------------------------------------
def parse(argv: list[str] | None) -> Settings:
    d = Settings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=d.seconds, help=f"training time (default {d.seconds:g})")
    p.add_argument("--embedding-size", type=int, default=d.embedding_size)
    p.add_argument("--hidden-size", type=int, default=d.hidden_size)
    p.add_argument("--seq-len", type=int, default=d.seq_len, help="training window length")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--window", type=int, default=d.window, help="length of the held-out window analysed")
    p.add_argument("--seed", type=int, default=d.seed)
    a = p.parse_args(argv)
    if a.seconds < 0:
        p.error(f"--seconds must be ≥ 0, got {a.seconds}")
    for name in ("embedding_size", "hidden_size", "seq_len", "batch_size"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(a, name)}")
    if a.window < 2:
        p.error(f"--window must be ≥ 2, got {a.window}")
    return Settings(**vars(a))


def main(argv: list[str] | None = None) -> int:
    s = parse(argv)
    started = time.perf_counter()
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)

    # 1. Train in PyTorch (float32).
    train_text, held_out_text = stdlib_text(TRAIN_MODULES), stdlib_text((HELD_OUT_MODULE,))
    chars = sorted(set(train_text) | set(held_out_text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in train_text], dtype=np.int64)
    held_out = np.array([index[c] for c in held_out_text], dtype=np.int64)
    V, E, H = len(chars), s.embedding_size, s.hidden_size
    print(f"1. PyTorch: Embedding({V}, {E}) → LSTM({E}, {H}) → Linear({H}, {V}), character level,")
    print(f"   trained on the source of {', '.join(TRAIN_MODULES)} ({ids.size:,} characters)")
    trained = CharLSTM(V, E, H)
    train(trained, ids, held_out, s, rng)

    # 2. Import float64 copies into bptt.
    mods = copy.deepcopy(trained).double()
    model = bptt.from_torch(mods.rnn, mods.linear, output="softmax", embedding=mods.embedding)
    print(f"\n2. bptt.from_torch → {model}")
    check = Checks()
    B = 8
    xb, yb = windows(held_out, rng.integers(0, held_out.size - s.window - 1, B), s.window)  # (T, B)
    with torch.no_grad():
        logits = mods(torch.from_numpy(xb))  # (T, B, V)
        J = F.cross_entropy(logits.flatten(0, 1), torch.from_numpy(yb).flatten(), reduction="sum") / B
    check(f"logits on {B} held-out windows of {s.window} (float64):", model.forward(xb).logits, numpy(logits))
    check("loss J = mean over windows of Σ_t Loss_t:", model.loss_and_grad(xb, yb).loss, float(J))

    # 3. One held-out window, looked at from inside.
    line = held_out_text.find("\n    def ", held_out.size // 3) + 1  # start at a method, for a readable window
    line = line if line + s.window < held_out.size else 0
    x, y = windows(held_out, np.array([line]), s.window)  # (T, 1)
    print(f"\n3. The window (T = {s.window}, held out): {''.join(chars[i] for i in x[:, 0])!r}")
    e = mods.embedding(torch.from_numpy(x)).detach()
    show_jacobians(model, mods.rnn, e, x, check)
    show_gradient_terms(model, mods, x, y, chars, check)
    show_input_sensitivity(model, mods, x, y, chars, check)

    worst = max(d for _, d in check.results)
    verdict = "all agree with PyTorch autograd" if check.all_passed else "SOME DISAGREE with PyTorch autograd"
    print(f"\n{len(check.results)} checks, worst max |Δ| = {worst:.1e} (tolerance {TOLERANCE:g}): {verdict}")
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0 if check.all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
