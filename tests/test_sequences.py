"""Variable-length batches, bidirectional layers and dropout: exact gradients against independent oracles.

Oracles (``tests/torch_sequences.py`` reads only ``model.config()``, the parameter arrays, the
data and the dropout masks):

1. PyTorch autograd in float64: ``torch.nn.LSTM`` / ``GRU`` / ``RNN`` (``bidirectional=True``
   where the layer is) through ``pack_padded_sequence(..., enforce_sorted=False)``, ``h_n`` for
   many-to-one; for dropout the same layers written as explicit loops that replay bptt's masks.
   The loss, every gradient (parameters of both directions, every initial state, ``x``), the
   outputs at valid steps and the final states must agree to 1e-9 relative.
2. Central differences on a few elements of every tensor (``model.loss_and_grad(...).loss``
   re-evaluated), at most 1e-6 relative.
3. A padded batch equals its sequences run one by one (bptt against itself): loss and
   gradients summed with the batch's ``1/B``, states, outputs.

The grid is a covering subset of cell (Elman tanh/relu, LSTM, GRU, mixed stacks) × depth 1–2
× bidirectional × lengths (``None``; all ``T`` given; ragged, unsorted, with a length-1 and a
length-``T`` sequence) × per-step / many-to-one targets × softmax / sigmoid / identity × dense
/ token inputs. The error of a tensor is ``max|a − n| / max(max|a|, max|n|, floor)``.
"""

from __future__ import annotations

import functools
import itertools
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import bptt
from torch_sequences import Reference, expected_param_shapes, expected_state_shapes, reference

torch.set_num_threads(1)  # the tensors are tiny: threads only add overhead

D, H, O = 3, 4, 5  # all different, so that a transposed weight cannot go unnoticed
D_TOKENS = 6  # vocabulary size for token-id inputs
T, B = 5, 4
RAGGED = np.array([3, 5, 1, 4])  # unsorted, with a length-1 and a length-T sequence
TORCH_TOL = 1e-9
FD_EPS = 1e-5
FD_TOL = 1e-6
FD_FLOOR = 1e-4  # gradients below ~1e-11 |J| are under the differences' rounding noise (see test_gradients)
FD_ELEMENTS = 3  # elements per tensor checked by central differences
SELF_TOL = 1e-10  # bptt against bptt (the same sums in another order)
PARAM_SCALE = 0.5
OUTPUTS = ("softmax", "sigmoid", "identity")
CLASSES = {"elman": bptt.Elman, "lstm": bptt.LSTM, "gru": bptt.GRU}


@dataclass(frozen=True)
class Case:
    """One network, data layout and target kind."""

    cell: str  # "elman", "lstm", "gru" or "mixed-<label>"
    depth: int
    bidirectional: bool
    output: str
    lengths: str  # "none", "full" (all T given) or "ragged"
    target: str  # "seq" (a loss at every valid step) or "last" (many-to-one)
    tokens: bool = False
    activation: str = "tanh"  # Elman only
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    kernels: str = "fast"

    @property
    def id(self) -> str:
        parts = ["tok" if self.tokens else "dense", self.cell]
        if self.cell == "elman":
            parts.append(self.activation)
        if not self.cell.startswith("mixed"):
            parts += [f"L{self.depth}", "bi" if self.bidirectional else "uni"]
        parts += [self.output, f"len-{self.lengths}", self.target]
        if self.dropout or self.recurrent_dropout:
            parts.append(f"drop{self.dropout}-rec{self.recurrent_dropout}")
        if self.kernels != "fast":
            parts.append(self.kernels)
        return "-".join(parts)


# Mixed stacks: label -> layers (kind, hidden_size, activation, bidirectional).
MIXED = {
    "gru4bi+elman3": (("gru", 4, "tanh", True), ("elman", 3, "tanh", False)),
    "lstm3+lstm3bi+gru2bi": (("lstm", 3, "tanh", False), ("lstm", 3, "tanh", True), ("gru", 2, "tanh", True)),
    "elman3relu-bi+lstm2": (("elman", 3, "relu", True), ("lstm", 2, "tanh", False)),
}


def build(case: Case, **extra) -> bptt.RNN:
    """The network of ``case`` (weights not yet randomised)."""
    d = D_TOKENS if case.tokens else D
    common = dict(output=case.output, dtype="float64", seed=0, kernels=case.kernels, **extra)
    if case.dropout or case.recurrent_dropout:
        common.update(dropout=case.dropout, recurrent_dropout=case.recurrent_dropout)
    if case.cell.startswith("mixed"):
        specs = [bptt.LayerSpec(k, h, a, bidirectional=bi) for k, h, a, bi in MIXED[case.cell.split("-", 1)[1]]]
        return bptt.RNN(d, specs, O, **common)
    if case.cell == "elman":
        common["activation"] = case.activation
    return CLASSES[case.cell](d, H, O, num_layers=case.depth, bidirectional=case.bidirectional, **common)


def randomise(m: bptt.RNN, rng: np.random.Generator) -> None:
    """Replace every parameter (biases included) by ``N(0, 1) * PARAM_SCALE``."""
    for name, p in m.params.items():
        m.params[name] = (rng.standard_normal(p.shape) * PARAM_SCALE).astype(p.dtype)


def make_lengths(mode: str) -> np.ndarray | None:
    return {"none": None, "full": np.full(B, T), "ragged": RAGGED.copy()}[mode]


def make_data(m: bptt.RNN, case: Case, rng: np.random.Generator):
    """Random ``x, y, h0`` for ``case``; padding steps hold large garbage that must not matter."""
    d = m.input_size
    x = rng.integers(0, d, size=(T, B)) if case.tokens else rng.standard_normal((T, B, d))
    lead = (T, B) if case.target == "seq" else (B,)
    if case.output == "softmax":
        y = rng.integers(0, O, size=lead)
    elif case.output == "sigmoid":
        y = rng.uniform(0.0, 1.0, size=(*lead, O))
    else:
        y = rng.standard_normal((*lead, O))
    lengths = make_lengths(case.lengths)
    if lengths is not None and not case.tokens:
        pad = np.arange(T)[:, None] >= lengths[None, :]
        x[pad] = 100.0 * rng.standard_normal((int(pad.sum()), d))
    h0 = {name: rng.standard_normal((B, *shape)) * 0.5 for name, shape in expected_state_shapes(m.config()).items()}
    return x, y, h0, lengths


def valid_steps(lengths: np.ndarray | None) -> np.ndarray:
    """(T, B) bool: ``t < lengths[b]``."""
    lens = np.full(B, T) if lengths is None else lengths
    return np.arange(T)[:, None] < lens[None, :]


def expected_grad_keys(m: bptt.RNN, x: np.ndarray) -> set[str]:
    keys = set(m.params) | set(expected_state_shapes(m.config()))
    if x.dtype.kind == "f":
        keys.add("x")
    return keys


# -- comparisons ----------------------------------------------------------------------------------------


def relative_error(a: np.ndarray, n: np.ndarray, floor: float = 1e-10) -> tuple[float, tuple[int, ...]]:
    """``max|a - n| / max(max|a|, max|n|, floor)`` and the index of the worst element."""
    a = np.asarray(a, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if a.size == 0:
        return 0.0, ()
    diff = np.abs(a - n)
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))
    denom = max(float(np.abs(a).max()), float(np.abs(n).max()), floor)
    return float(diff.max()) / denom, worst


def mismatches(got: dict, want: dict, tol: float, got_name: str, want_name: str, floor: float = 1e-10) -> list[str]:
    """A line for every tensor of ``want`` whose relative error exceeds ``tol`` (or that ``got`` lacks)."""
    lines = []
    for name, n in want.items():
        if name not in got:
            lines.append(f"{name}: missing from {got_name}")
            continue
        a = np.asarray(got[name])
        n = np.asarray(n)
        if a.shape != n.shape:
            lines.append(f"{name}: shape {a.shape} != {want_name} shape {n.shape}")
            continue
        err, idx = relative_error(a, n, floor)
        if not err <= tol:  # also catches NaN
            lines.append(
                f"{name}{list(idx)}: relative error {err:.3e} > {tol:.0e} (max|{got_name}| "
                f"{np.abs(a).max():.3e}, max|{want_name}| {np.abs(n).max():.3e}); "
                f"{got_name} {a[idx]!r} vs {want_name} {n[idx]!r}"
            )
    return lines


def compare(
    r, ref: Reference, lengths: np.ndarray | None, tol: float = TORCH_TOL, names: tuple[str, str] = ("bptt", "torch")
) -> list[str]:
    """Loss, gradients, outputs (valid steps, or one row per sequence) and final state of ``r`` against ``ref``."""
    got_name, want_name = names
    bad = []
    loss_err = abs(r.loss - ref.loss) / max(abs(ref.loss), 1e-10)
    if not loss_err <= tol:
        bad.append(f"loss: relative error {loss_err:.3e}; {got_name} {r.loss!r} vs {want_name} {ref.loss!r}")
    bad += mismatches(r.grads, ref.grads, tol, got_name, want_name)
    outputs = np.asarray(r.outputs)
    if outputs.shape != ref.outputs.shape:
        bad.append(f"outputs: shape {outputs.shape} != {want_name} shape {ref.outputs.shape}")
    elif outputs.ndim == 3:
        valid = valid_steps(lengths)
        bad += mismatches({"outputs[valid]": outputs[valid]}, {"outputs[valid]": ref.outputs[valid]}, tol, *names)
    else:
        bad += mismatches({"outputs": outputs}, {"outputs": ref.outputs}, tol, *names)
    bad += mismatches(r.state, ref.state, tol, f"{got_name} final state", want_name)
    return bad


def finite_difference_mismatches(m, x, y, h0, lengths, grads, seed: int, **kwargs) -> list[str]:
    """Central differences on ``FD_ELEMENTS`` random elements of every parameter, initial state and float ``x``.

    For ``x`` one padding element (if any) is added: its gradient must be 0 both ways.
    """
    rng = np.random.default_rng(seed)

    def J() -> float:
        return m.loss_and_grad(x, y, h0=h0, lengths=lengths, **kwargs).loss

    J0 = J()
    floor = FD_FLOOR * max(1.0, abs(J0))
    tensors = {**m.params, **h0}
    if x.dtype.kind == "f":
        tensors["x"] = x
    analytic, numeric = {}, {}
    for name, arr in tensors.items():
        picks = list(rng.choice(arr.size, size=min(FD_ELEMENTS, arr.size), replace=False))
        if name == "x" and lengths is not None and (lengths < T).any():
            b = int(np.argmin(lengths))
            picks.append(int(np.ravel_multi_index((T - 1, b, 0), arr.shape)))
        a, n = [], []
        for i in picks:
            old = arr.flat[i]
            arr.flat[i] = old + FD_EPS
            jp = J()
            arr.flat[i] = old - FD_EPS
            jm = J()
            arr.flat[i] = old
            n.append((jp - jm) / (2 * FD_EPS))
            a.append(grads[name].flat[i])
        key = f"{name}.flat{picks}"
        analytic[key], numeric[key] = np.array(a), np.array(n)
    assert J() == J0, "an element was not restored"
    return mismatches(analytic, numeric, FD_TOL, "analytic", "numeric", floor)


# -- the grid -------------------------------------------------------------------------------------------


def _grid() -> list[Case]:
    cases = []
    lengths_cycle = ("ragged", "none", "ragged", "full")
    for i, (cell, depth, bi, target) in enumerate(
        itertools.product(("elman", "lstm", "gru"), (1, 2), (False, True), ("seq", "last"))
    ):
        cases.append(
            Case(cell, depth, bi, OUTPUTS[(i + i // 6) % 3], lengths_cycle[(i + i // 4) % 4], target, tokens=i % 5 == 2)
        )
    # Elman ReLU (torch only: no margin from the kink is enforced for finite differences).
    cases += [
        Case("elman", 2, True, "sigmoid", "ragged", "seq", activation="relu"),
        Case("elman", 1, True, "softmax", "ragged", "last", activation="relu", tokens=True),
    ]
    for j, label in enumerate(MIXED):
        for k, target in enumerate(("seq", "last")):
            cases.append(Case(f"mixed-{label}", 0, False, OUTPUTS[(j + k) % 3], "ragged", target, tokens=(j + k) == 2))
    # The reference kernels (each cell's step looped) on the same features.
    cases += [
        Case(cell, 2, True, out, "ragged", target, kernels="reference")
        for cell, out, target in (("elman", "identity", "seq"), ("lstm", "softmax", "last"), ("gru", "sigmoid", "seq"))
    ]
    return cases


CASES = _grid()
FD_CASES = [c for c in CASES if c.activation != "relu" and "relu" not in c.cell and c.kernels == "fast"]

DROPOUT_CASES = [
    Case("lstm", 2, True, "softmax", "ragged", "seq", dropout=0.3, recurrent_dropout=0.4),
    Case("gru", 2, True, "sigmoid", "ragged", "last", dropout=0.3, recurrent_dropout=0.4),
    Case("elman", 2, True, "identity", "ragged", "seq", dropout=0.3, recurrent_dropout=0.4),
    Case("gru", 2, False, "softmax", "none", "seq", tokens=True, dropout=0.5, recurrent_dropout=0.25),
    Case("lstm", 2, False, "identity", "full", "last", dropout=0.25, recurrent_dropout=0.5),
    Case("lstm", 1, True, "identity", "ragged", "last", recurrent_dropout=0.4),
    Case("gru", 1, False, "softmax", "ragged", "seq", recurrent_dropout=0.4),
    Case("elman", 2, False, "sigmoid", "ragged", "seq", dropout=0.4),
    Case("mixed-lstm3+lstm3bi+gru2bi", 0, False, "sigmoid", "ragged", "seq", dropout=0.3, recurrent_dropout=0.4),
    Case("lstm", 2, True, "sigmoid", "ragged", "seq", dropout=0.3, recurrent_dropout=0.4, kernels="reference"),
    Case("gru", 2, True, "identity", "ragged", "last", dropout=0.3, recurrent_dropout=0.4, kernels="reference"),
]


def _params(cases: list[Case]) -> list:
    return [pytest.param(c, id=c.id) for c in cases]


# -- prepared passes ------------------------------------------------------------------------------------


@dataclass
class Prepared:
    model: bptt.RNN
    x: np.ndarray
    y: np.ndarray
    h0: dict[str, np.ndarray]
    lengths: np.ndarray | None
    result: object  # the LossAndGrad
    ref: Reference


def _copy(r):
    """A private copy of what ``loss_and_grad`` returned (loss, grads, outputs, state)."""

    @dataclass
    class Result:
        loss: float
        grads: dict
        outputs: np.ndarray
        state: dict

    return Result(
        loss=r.loss,
        grads={k: np.array(v, copy=True) for k, v in r.grads.items()},
        outputs=np.array(r.outputs, copy=True),
        state={k: np.array(v, copy=True) for k, v in r.state.items()},
    )


@functools.cache
def prepared(case: Case) -> Prepared:
    """Model, data, ``loss_and_grad`` (no dropout) and the torch ``nn`` reference for ``case``."""
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    m = build(case)
    randomise(m, rng)
    x, y, h0, lengths = make_data(m, case, rng)
    ref = reference(m.config(), m.params, x, y, h0, lengths, engine="nn")
    r = m.loss_and_grad(x, y, h0=h0, lengths=lengths)
    return Prepared(m, x, y, h0, lengths, _copy(r), ref)


# -- names ----------------------------------------------------------------------------------------------


NAME_CASES = [
    Case(cell, depth, bi, "softmax", "none", "seq")
    for cell, depth, bi in itertools.product(("elman", "lstm", "gru"), (1, 2, 3), (False, True))
] + [Case(f"mixed-{label}", 0, False, "softmax", "none", "seq") for label in MIXED]


@pytest.mark.parametrize("case", _params(NAME_CASES))
def test_parameter_and_state_names(case: Case) -> None:
    """Names and shapes follow the documented convention, and ``config()`` rebuilds the same network."""
    m = build(case)
    cfg = m.config()
    spec_bi = [bool(s.get("bidirectional", False)) for s in cfg["layers"]]
    if case.cell.startswith("mixed"):
        assert spec_bi == [bi for *_, bi in MIXED[case.cell.split("-", 1)[1]]], cfg["layers"]
    else:
        assert spec_bi == [case.bidirectional] * case.depth, f"config() must record bidirectional: {cfg['layers']}"
    assert {k: tuple(v.shape) for k, v in m.params.items()} == expected_param_shapes(cfg)
    assert dict(m.state_shapes) == expected_state_shapes(cfg)
    again = bptt.RNN.from_config(cfg, params=m.params)
    assert {k: v.shape for k, v in again.params.items()} == {k: v.shape for k, v in m.params.items()}


def test_documented_names() -> None:
    """The examples of the contract, spelled out."""
    m = bptt.LSTM(D, H, O, num_layers=2, bidirectional=True, seed=0)
    assert m.params["V_l0_reverse"].shape == (4 * H, D)
    assert m.params["V_l1"].shape == (4 * H, 2 * H)  # layer 1 reads [h_fwd; h_rev]
    assert m.params["W_l1_reverse"].shape == (4 * H, H)
    assert m.params["U"].shape == (O, 2 * H)
    assert {"h0_l0", "h0_l0_reverse", "c0_l1_reverse"} <= set(m.state_shapes)
    g = bptt.GRU(D, H, O, bidirectional=True, seed=0)
    assert set(g.params) == {"V", "W", "b", "b_hn", "V_reverse", "W_reverse", "b_reverse", "b_hn_reverse", "U", "b_y"}
    assert set(g.state_shapes) == {"h0", "h0_reverse"}
    e = bptt.Elman(D, H, O, bidirectional=True, seed=0)
    assert set(e.params) == {"V", "W", "b_h", "V_reverse", "W_reverse", "b_h_reverse", "U", "b_y"}
    assert e.params["U"].shape == (O, 2 * H)


# -- bptt against torch and central differences -----------------------------------------------------------


@pytest.mark.parametrize("case", _params(CASES))
def test_matches_torch(case: Case) -> None:
    p = prepared(case)
    r = p.result
    assert set(r.grads) == expected_grad_keys(p.model, p.x)
    for name, g in r.grads.items():
        assert g.dtype == np.float64, f"{name}: dtype {g.dtype}"
    want_outputs = (T, B, O) if case.target == "seq" else (B, O)
    assert r.outputs.shape == want_outputs, f"outputs shape {r.outputs.shape}, expected {want_outputs}"
    bad = compare(r, p.ref, p.lengths)
    if "x" in r.grads:
        pad = ~valid_steps(p.lengths)
        if np.any(r.grads["x"][pad] != 0):
            bad.append(f"grads['x'] is not zero at padding steps: max {np.abs(r.grads['x'][pad]).max():.3e}")
    assert not bad, f"{case.id}: bptt differs from torch autograd:\n" + "\n".join(bad)


@pytest.mark.parametrize("case", _params(FD_CASES))
def test_matches_finite_differences(case: Case) -> None:
    p = prepared(case)
    bad = finite_difference_mismatches(p.model, p.x, p.y, p.h0, p.lengths, p.result.grads, zlib.crc32(case.id.encode()))
    assert not bad, f"{case.id}: gradients differ from central differences:\n" + "\n".join(bad)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_loop_oracle_matches_nn_oracle(cell: str) -> None:
    """The explicit-loop torch engine (used to replay dropout) equals torch.nn on packed sequences."""
    for case in (
        Case(cell, 2, True, "sigmoid", "ragged", "seq"),
        Case(cell, 2, True, "softmax", "ragged", "last", tokens=True),
        Case(cell, 1, False, "identity", "none", "seq"),
    ):
        p = prepared(case)
        loop = reference(p.model.config(), p.model.params, p.x, p.y, p.h0, p.lengths, engine="loop")
        bad = compare(loop, p.ref, p.lengths, 1e-12, ("loop", "nn"))
        top = len(p.model.config()["layers"]) - 1
        bad += mismatches({"hidden": loop.hidden[top]}, {"hidden": p.ref.hidden[top]}, 1e-12, "loop", "nn")
        assert not bad, f"{case.id}: the two torch engines differ:\n" + "\n".join(bad)


@pytest.mark.parametrize(("cell", "bidirectional"), list(itertools.product(["elman", "lstm", "gru"], [False, True])))
def test_lengths_none_equals_all_T(cell: str, bidirectional: bool) -> None:
    case = Case(cell, 2, bidirectional, "softmax", "none", "seq")
    p = prepared(case)
    full = p.model.loss_and_grad(p.x, p.y, h0=p.h0, lengths=np.full(B, T))
    bad = compare(full, _as_reference(p.result), None, 1e-12, ("lengths=T", "lengths=None"))
    assert not bad, f"{case.id}:\n" + "\n".join(bad)


def _as_reference(r) -> Reference:
    return Reference(loss=r.loss, grads=r.grads, outputs=np.asarray(r.outputs), state=r.state, hidden={})


# -- a padded batch is its sequences one by one -------------------------------------------------------------


ONE_BY_ONE = [
    Case("lstm", 2, True, "softmax", "ragged", "seq"),
    Case("lstm", 2, True, "identity", "ragged", "last"),
    Case("gru", 2, True, "sigmoid", "ragged", "seq"),
    Case("gru", 1, False, "softmax", "ragged", "last", tokens=True),
    Case("elman", 2, True, "identity", "ragged", "last"),
    Case("elman", 2, False, "softmax", "ragged", "seq", tokens=True),
    Case("mixed-gru4bi+elman3", 0, False, "sigmoid", "ragged", "last"),
]


@pytest.mark.parametrize("case", _params(ONE_BY_ONE))
def test_padded_batch_equals_sequences_one_by_one(case: Case) -> None:
    """``J = (1/B) Σ_b J_b``: every gradient is the sum of the single sequences' gradients over B."""
    p = prepared(case)
    m, x, y, h0, lengths = p.model, p.x, p.y, p.h0, p.lengths
    want_grads = {k: np.zeros_like(v) for k, v in p.result.grads.items()}
    want_state = {k: np.zeros_like(v) for k, v in p.result.state.items()}
    want_outputs = np.zeros_like(p.result.outputs)
    loss = 0.0
    for b in range(B):
        L = int(lengths[b])
        yb = y[:L, b : b + 1] if case.target == "seq" else y[b : b + 1]
        rb = m.loss_and_grad(x[:L, b : b + 1], yb, h0={k: v[b : b + 1] for k, v in h0.items()})
        loss += rb.loss / B
        for k, g in rb.grads.items():
            if k == "x":
                want_grads["x"][:L, b] = g[:, 0] / B
            elif k in h0:
                want_grads[k][b] = g[0] / B
            else:
                want_grads[k] += g / B
        for k, s in rb.state.items():
            want_state[k][b] = s[0]
        if case.target == "seq":
            want_outputs[:L, b] = rb.outputs[:, 0]
        else:
            want_outputs[b] = rb.outputs[0]
    want = Reference(loss=loss, grads=want_grads, outputs=want_outputs, state=want_state, hidden={})
    bad = compare(p.result, want, lengths, SELF_TOL, ("padded batch", "one by one"))
    assert not bad, f"{case.id}: a padded batch differs from its sequences run alone:\n" + "\n".join(bad)


# -- forward ----------------------------------------------------------------------------------------------


FORWARD_CASES = [
    Case("lstm", 2, True, "softmax", "ragged", "seq"),
    Case("gru", 2, True, "identity", "ragged", "seq", tokens=True),
    Case("elman", 2, True, "sigmoid", "ragged", "seq"),
    Case("gru", 1, False, "sigmoid", "ragged", "seq"),
    Case("mixed-lstm3+lstm3bi+gru2bi", 0, False, "identity", "ragged", "seq"),
]


@pytest.mark.parametrize("case", _params(FORWARD_CASES))
def test_forward_zero_hidden_at_padding_and_final_states(case: Case) -> None:
    p = prepared(case)
    m = p.model
    fwd = m.forward(p.x, h0=p.h0, lengths=p.lengths)
    loop = reference(m.config(), m.params, p.x, p.y, p.h0, p.lengths, engine="loop")
    pad = ~valid_steps(p.lengths)
    bad = []
    assert len(fwd.hidden) == len(m.config()["layers"])
    for k, (hk, spec) in enumerate(zip(fwd.hidden, m.config()["layers"], strict=True)):
        width = spec["hidden_size"] * (2 if spec.get("bidirectional") else 1)
        if hk.shape != (T, B, width):
            bad.append(f"hidden[{k}]: shape {hk.shape}, expected {(T, B, width)} ([h_fwd; h_rev])")
            continue
        if np.any(hk[pad] != 0):
            bad.append(f"hidden[{k}] is not zero at padding steps: max {np.abs(hk[pad]).max():.3e}")
        bad += mismatches({f"hidden[{k}]": hk}, {f"hidden[{k}]": loop.hidden[k]}, TORCH_TOL, "bptt", "torch loop")
    top = len(fwd.hidden) - 1
    bad += mismatches({"top hidden": fwd.hidden[top]}, {"top hidden": p.ref.hidden[top]}, TORCH_TOL, "bptt", "torch nn")
    bad += mismatches(fwd.state, p.ref.state, TORCH_TOL, "forward state", "torch h_n")
    bad += mismatches(fwd.state, p.result.state, 0.0, "forward state", "loss_and_grad state")
    valid = ~pad
    bad += mismatches({"outputs": fwd.outputs[valid]}, {"outputs": p.ref.outputs[valid]}, TORCH_TOL, "bptt", "torch")
    assert not bad, f"{case.id}:\n" + "\n".join(bad)


# -- dropout ----------------------------------------------------------------------------------------------


def _h_state_names(m: bptt.RNN) -> set[str]:
    return {k for k in expected_state_shapes(m.config()) if k.startswith("h0")}


def check_mask_structure(m: bptt.RNN, case: Case, masks) -> list[str]:
    """Shapes and values of ``r.dropout_masks`` for the parts of dropout that are on."""
    bad = []
    specs = m.config()["layers"]
    if case.dropout:
        scale = 1.0 / (1.0 - case.dropout)
        outs = tuple(masks.outputs)
        if len(outs) != len(specs) - 1:
            bad.append(f"dropout_masks.outputs: {len(outs)} masks for {len(specs)} layers, expected {len(specs) - 1}")
        for k, (mk, spec) in enumerate(zip(outs, specs, strict=False)):
            width = spec["hidden_size"] * (2 if spec.get("bidirectional") else 1)
            if mk.shape != (T, B, width):
                bad.append(f"dropout_masks.outputs[{k}]: shape {mk.shape}, expected {(T, B, width)}")
            elif not np.all((mk == 0) | (mk == scale)):
                bad.append(f"dropout_masks.outputs[{k}]: entries other than 0 and {scale}: {np.unique(mk)}")
    if case.recurrent_dropout:
        scale = 1.0 / (1.0 - case.recurrent_dropout)
        rec = dict(masks.recurrent)
        if set(rec) != _h_state_names(m):
            bad.append(f"dropout_masks.recurrent keys {sorted(rec)}, expected {sorted(_h_state_names(m))}")
        shapes = expected_state_shapes(m.config())
        for name, mk in rec.items():
            if name in shapes and mk.shape != (B, *shapes[name]):
                bad.append(f"dropout_masks.recurrent[{name!r}]: shape {mk.shape}, expected {(B, *shapes[name])}")
            elif not np.all((mk == 0) | (mk == scale)):
                bad.append(f"dropout_masks.recurrent[{name!r}]: entries other than 0 and {scale}: {np.unique(mk)}")
    return bad


@functools.cache
def prepared_dropout(case: Case):
    """Model, data, a dropout pass (rng seeded from the case) and the torch loop replaying its masks."""
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    m = build(case)
    randomise(m, rng)
    x, y, h0, lengths = make_data(m, case, rng)
    r = m.loss_and_grad(x, y, h0=h0, lengths=lengths, dropout_rng=np.random.default_rng(11))
    masks = r.dropout_masks
    ref = reference(
        m.config(),
        m.params,
        x,
        y,
        h0,
        lengths,
        engine="loop",
        output_masks=tuple(masks.outputs or ()),
        recurrent_masks=dict(masks.recurrent or {}),
    )
    return m, x, y, h0, lengths, r, ref


@pytest.mark.parametrize("case", _params(DROPOUT_CASES))
def test_dropout_matches_torch_with_the_same_masks(case: Case) -> None:
    m, x, y, h0, lengths, r, ref = prepared_dropout(case)
    bad = check_mask_structure(m, case, r.dropout_masks)
    assert set(r.grads) == expected_grad_keys(m, x)
    bad += compare(r, ref, lengths)
    assert not bad, f"{case.id}: a dropout pass differs from torch replaying its masks:\n" + "\n".join(bad)
    # Dropout did something: the pass without a generator is the plain network.
    plain = m.loss_and_grad(x, y, h0=h0, lengths=lengths)
    assert plain.loss != r.loss, "dropout_rng changed nothing"
    plain_ref = reference(m.config(), m.params, x, y, h0, lengths, engine="nn")
    bad = compare(plain, plain_ref, lengths)
    assert not bad, f"{case.id}: without dropout_rng the pass must not drop:\n" + "\n".join(bad)


@pytest.mark.parametrize("case", _params(DROPOUT_CASES))
def test_dropout_replay_and_determinism(case: Case) -> None:
    m, x, y, h0, lengths, r, _ = prepared_dropout(case)
    replay = m.loss_and_grad(x, y, h0=h0, lengths=lengths, dropout_masks=r.dropout_masks)
    bad = compare(replay, _as_reference(r), lengths, 1e-13, ("replay", "first pass"))
    again = m.loss_and_grad(x, y, h0=h0, lengths=lengths, dropout_rng=np.random.default_rng(11))
    bad += compare(again, _as_reference(r), lengths, 0.0, ("same seed", "first pass"))
    for k, (a, b) in enumerate(zip(again.dropout_masks.outputs or (), r.dropout_masks.outputs or (), strict=True)):
        if not np.array_equal(a, b):
            bad.append(f"outputs mask {k} differs for the same seed")
    for name, mk in (r.dropout_masks.recurrent or {}).items():
        if not np.array_equal(again.dropout_masks.recurrent[name], mk):
            bad.append(f"recurrent mask {name} differs for the same seed")
    assert not bad, f"{case.id}:\n" + "\n".join(bad)
    # forward never drops.
    fwd = m.forward(x, h0=h0, lengths=lengths)
    plain = m.loss_and_grad(x, y, h0=h0, lengths=lengths)
    assert mismatches(fwd.state, plain.state, 0.0, "forward", "no dropout") == []


@pytest.mark.parametrize("case", _params([c for c in DROPOUT_CASES if c.kernels == "fast"]))
def test_dropout_matches_finite_differences(case: Case) -> None:
    """With the masks fixed (replayed), the loss is a smooth function whose gradient bptt returns."""
    m, x, y, h0, lengths, r, _ = prepared_dropout(case)
    grads = {k: np.array(v, copy=True) for k, v in r.grads.items()}
    masks = r.dropout_masks
    bad = finite_difference_mismatches(m, x, y, h0, lengths, grads, zlib.crc32(case.id.encode()), dropout_masks=masks)
    assert not bad, f"{case.id}: dropout gradients differ from central differences:\n" + "\n".join(bad)


def test_dropout_mask_statistics() -> None:
    """Masks are Bernoulli(1 − p) / (1 − p): outputs per step and unit, recurrent once per sequence."""
    p, q, n = 0.3, 0.4, 500
    m = bptt.LSTM(D, H, O, num_layers=3, bidirectional=True, dropout=p, recurrent_dropout=q, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, n, D))
    y = rng.integers(0, O, size=(T, n))
    masks = m.loss_and_grad(x, y, dropout_rng=np.random.default_rng(1)).dropout_masks
    assert len(masks.outputs) == 2
    for mk in masks.outputs:
        assert mk.shape == (T, n, 2 * H)
        assert abs(float((mk == 0).mean()) - p) < 0.03
        assert not np.array_equal(mk[0], mk[1]), "the output masks must be drawn anew at every step"
    assert set(masks.recurrent) == {f"h0_l{k}{tail}" for k in range(3) for tail in ("", "_reverse")}
    drawn = list(masks.recurrent.values())
    for mk in drawn:
        assert mk.shape == (n, H)
        assert abs(float((mk == 0).mean()) - q) < 0.04
    assert not any(np.array_equal(a, b) for a, b in itertools.combinations(drawn, 2)), "masks must be independent"


# -- arguments ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lengths",
    [np.array([0, 5, 1, 4]), np.array([3, 6, 1, 4]), np.array([3, 5, 1]), np.array([[3, 5, 1, 4]])],
    ids=["zero", "longer-than-T", "wrong-count", "wrong-ndim"],
)
def test_invalid_lengths_are_refused(lengths: np.ndarray) -> None:
    m = bptt.GRU(D, H, O, bidirectional=True, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, D))
    y = rng.integers(0, O, size=(T, B))
    with pytest.raises(ValueError, match="lengths"):
        m.loss_and_grad(x, y, lengths=lengths)
