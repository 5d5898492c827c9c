"""Every seed question (course quiz and "We Recur!" exam), answered with numbers computed by bptt.

Run ``python examples/seed_questions.py`` for a report. Each question is one function
returning a small frozen dataclass (or dict) of numbers, so the answers can be imported
and checked (``tests/test_seed_questions.py`` does).

Conventions
-----------
* Time steps are written 1-based as in the documents (``x_1 .. x_T``); arrays are
  indexed 0-based, so step ``t`` lives at index ``t - 1``.
* bptt's loss is ``J = (1/B) Σ_b Σ_t w_tb Loss_tb``: the derivations below use ``B = 1``
  unless they say otherwise, so that ``J`` is the documents' plain ``Σ_t Loss_t``.
* The initial state is ``s_0 = h_0 = 0`` (bptt's default) unless stated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import bptt

# A dependence counts when a 1e-3 change of one weight moves ∂Loss_t/∂x_t by more than this
# relative amount; elements that do not enter move it by exactly 0 or by rounding (~1e-16).
PERTURBATION = 1e-3
REL_THRESHOLD = 1e-9

EXAM_F_STATEMENTS = (
    "depends on W_ox",
    "depends on all elements of W_ox",
    "depends on W_ssx",
    "depends on all elements of W_ssx",
)


# --------------------------------------------------------------------------------------
# Quiz Q1: fixed-length inputs, many-to-one
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Q1Answer:
    """A fixed-length sequence processed many-to-one (only the last step has a loss)."""

    T: int
    loss: float
    loss_other_earlier_targets: float
    loss_unchanged: bool  # earlier targets changed, loss identical (bit for bit)
    grads_unchanged: bool  # ... and every gradient identical (bit for bit)
    full_loss: float  # the same data scored at every step (many-to-many)
    full_loss_other_earlier_targets: float
    input_grad_norms: np.ndarray  # ‖∂J/∂x_t‖ for t = 1..T: every input still matters
    answer: str


def quiz_q1(T: int = 6, seed: int = 0) -> Q1Answer:
    """Quiz Q1: yes, an RNN is useful for fixed-length inputs (e.g. many-to-one).

    ``loss_weights`` selects only the last step, ``J = Loss_T``.  Changing the targets of
    steps ``1 .. T-1`` then leaves the loss and every gradient exactly unchanged, while the
    gradient still reaches every input ``x_t`` through the recurrence.
    """
    rng = np.random.default_rng(seed)
    D, H, O, B = 3, 5, 4, 2
    m = bptt.Elman(D, H, O, seed=seed)
    x = rng.standard_normal((T, B, D))
    y = rng.integers(0, O, size=(T, B))
    y_other = y.copy()
    y_other[:-1] = (y[:-1] + 1 + rng.integers(0, O - 1, size=(T - 1, B))) % O  # every earlier target changed
    w = np.zeros((T, B))
    w[-1] = 1.0  # many-to-one: only the last step is scored
    r = m.loss_and_grad(x, y, loss_weights=w)
    r_other = m.loss_and_grad(x, y_other, loss_weights=w)
    grads_same = all(np.array_equal(r.grads[k], r_other.grads[k]) for k in r.grads)
    return Q1Answer(
        T=T,
        loss=r.loss,
        loss_other_earlier_targets=r_other.loss,
        loss_unchanged=r.loss == r_other.loss,
        grads_unchanged=grads_same,
        full_loss=m.loss(x, y),
        full_loss_other_earlier_targets=m.loss(x, y_other),
        input_grad_norms=np.linalg.norm(r.grads["x"], axis=(1, 2)),
        answer="Yes",
    )


# --------------------------------------------------------------------------------------
# Quiz Q2: language generation, ŷ_t over a vocabulary of N words
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Q2Answer:
    """Softmax outputs of a token-id language model with a vocabulary of N words."""

    N: int
    T: int
    B: int
    shape: tuple[int, ...]
    min_entry: float
    max_entry: float
    max_sum_error: float  # max_t,b |Σ_n ŷ_t[n] - 1|
    example: np.ndarray  # ŷ_1 of the first sequence
    options: dict[str, bool]  # the quiz's statements and whether they hold for the computed ŷ
    quiz_marks: dict[str, bool]  # the statements the quiz marks as correct


def quiz_q2(N: int = 10, T: int = 5, B: int = 3, seed: int = 0) -> Q2Answer:
    """Quiz Q2: ŷ_t is a length-N vector with entries in [0, 1] (and they sum to 1)."""
    rng = np.random.default_rng(seed)
    m = bptt.Elman(N, 8, N, output="softmax", seed=seed)
    tokens = rng.integers(0, N, size=(T, B))  # word ids in, one distribution per step out
    p = m.forward(tokens).outputs
    binary = bool(np.all((p == 0) | (p == 1)))
    in_unit = bool(np.all((p >= 0) & (p <= 1)))
    options = {
        "ŷ_t is a vector of length N": p.shape[-1] == N,
        "ŷ_t is a vector of length (L - t)": all(p[t].shape[-1] == T - (t + 1) for t in range(T)),
        "ŷ_t is a vector of length L × N": p.shape[-1] == T * N,
        "each element of ŷ_t is either 0 or 1": binary,
        "each element of ŷ_t is a number from 0 to 1": in_unit,
        # true but loose (the entries never exceed 1): the quiz does not mark it
        "each element of ŷ_t is a number from 0 to N": bool(np.all((p >= 0) & (p <= N))),
    }
    marked = ("ŷ_t is a vector of length N", "each element of ŷ_t is a number from 0 to 1")
    return Q2Answer(
        N=N,
        T=T,
        B=B,
        shape=p.shape,
        min_entry=float(p.min()),
        max_entry=float(p.max()),
        max_sum_error=float(np.abs(p.sum(axis=-1) - 1.0).max()),
        example=p[0, 0].copy(),
        options=options,
        quiz_marks={k: k in marked for k in options},
    )


# --------------------------------------------------------------------------------------
# Quiz Q3: ∂L/∂b_y is a sum of one term per step
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Q3Answer:
    """∂L/∂b_y from BPTT against the sum of its per-step terms."""

    grad: np.ndarray  # r.grads["b_y"]
    step_terms: np.ndarray  # (T, O): ∂L_t/∂ŷ_t ∂ŷ_t/∂b_y, from loss_weights one-hot on step t
    sum_of_terms: np.ndarray
    max_abs_error: float  # |grad - Σ_t term_t|
    residual_sum_error: float  # |grad - (1/B) Σ_t Σ_b (p_tb - onehot(y_tb))|
    single_term_errors: np.ndarray  # (T,): |grad - term_t| for every t: option "one term" is wrong
    hidden_depends_on_b_y: bool  # False: ∂h_t/∂b_y = 0, so options through h_t give 0
    wrong_through_h: np.ndarray  # the value of those options: a zero vector


def quiz_q3(T: int = 5, B: int = 2, seed: int = 1) -> Q3Answer:
    """Quiz Q3: ∂L/∂b_y = Σ_t (∂L/∂ŷ_t)(∂ŷ_t/∂b_y), one term per step.

    Each term is the gradient of the loss restricted to step t (``loss_weights`` one-hot on
    t); for softmax + cross-entropy it is ``(1/B) Σ_b (p_t - onehot(y_t))``.  The options
    that route through ``h_t`` are zero since ``h_t`` does not depend on ``b_y``.
    """
    rng = np.random.default_rng(seed)
    D, H, O = 3, 4, 5
    m = bptt.Elman(D, H, O, seed=seed)
    m.params["b_y"] = rng.standard_normal(O)  # a non-zero bias, so the model is generic
    m.params["b_h"] = rng.standard_normal(H)
    x = rng.standard_normal((T, B, D))
    y = rng.integers(0, O, size=(T, B))
    r = m.loss_and_grad(x, y)
    terms = np.empty((T, O))
    for t in range(T):
        w = np.zeros((T, B))
        w[t] = 1.0
        terms[t] = m.loss_and_grad(x, y, loss_weights=w).grads["b_y"]
    residual = r.outputs.copy()
    residual[np.arange(T)[:, None], np.arange(B)[None, :], y] -= 1.0
    by_residuals = residual.sum(axis=(0, 1)) / B

    shifted = m.copy()
    shifted.params["b_y"] = shifted.params["b_y"] + 1.0
    hidden_moves = not np.array_equal(m.forward(x).hidden[0], shifted.forward(x).hidden[0])
    return Q3Answer(
        grad=r.grads["b_y"],
        step_terms=terms,
        sum_of_terms=terms.sum(axis=0),
        max_abs_error=float(np.abs(r.grads["b_y"] - terms.sum(axis=0)).max()),
        residual_sum_error=float(np.abs(r.grads["b_y"] - by_residuals).max()),
        single_term_errors=np.abs(r.grads["b_y"][None] - terms).max(axis=1),
        hidden_depends_on_b_y=hidden_moves,
        wrong_through_h=np.zeros(O),
    )


# --------------------------------------------------------------------------------------
# Quiz Q4: ∂L/∂b_h as the explicit double sum with Jacobian products
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Q4Answer:
    """∂L/∂b_h from BPTT against the quiz's double sum, computed term by term."""

    grad: np.ndarray  # r.grads["b_h"]
    double_sum: np.ndarray  # Σ_t Σ_{k≤t} ∂L_t/∂h_t (Π_{i=k+1..t} ∂h_i/∂h_{i-1}) ∂h_k/∂b_h
    max_abs_error: float
    term_norms: np.ndarray  # (T, T): ‖term(t, k)‖, zero above the diagonal (k > t)
    wrong_last_step_only: np.ndarray  # ∂L_T/∂h_T ∂h_T/∂b_h
    wrong_direct_only: np.ndarray  # Σ_t ∂L_t/∂h_t ∂h_t/∂b_h
    wrong_no_jacobians: np.ndarray  # Σ_t ∂L_t/∂h_t Σ_{k≤t} ∂h_k/∂b_h
    wrong_errors: dict[str, float]  # max |grad - option| for each wrong option


def quiz_q4(T: int = 5, seed: int = 2) -> Q4Answer:
    """Quiz Q4: ∂L/∂b_h = Σ_t (∂L_t/∂h_t) Σ_{k≤t} (Π_{i=k+1..t} ∂h_i/∂h_{i-1}) ∂h_k/∂b_h.

    For one sequence (B = 1), tanh hidden units and softmax + cross-entropy, with
    ``a_i = V x_i + W h_{i-1} + b_h`` and ``h_i = tanh(a_i)``:

    * ``∂h_i/∂h_{i-1} = diag(f'(a_i)) W`` with ``f'(a_i) = 1 - h_i²``,
    * ``∂h_k/∂b_h = diag(f'(a_k))``,
    * ``∂L_t/∂h_t = (p_t - y_t)ᵀ U`` (a row; ``y_t`` one-hot).

    Each term is the row ``∂L_t/∂h_t · J_t J_{t-1} ··· J_{k+1} · diag(f'(a_k))``, built
    from explicit matrices taken from the forward pass.  (The ``k = 0`` term of the quiz
    is zero: the initial state does not depend on ``b_h``.)
    """
    rng = np.random.default_rng(seed)
    D, H, O = 3, 4, 3
    m = bptt.Elman(D, H, O, activation="tanh", output="softmax", seed=seed)
    m.params["W"] = 0.9 * rng.standard_normal((H, H))  # a recurrence strong enough to matter
    m.params["b_h"] = 0.3 * rng.standard_normal(H)
    x = rng.standard_normal((T, 1, D))
    y = rng.integers(0, O, size=(T, 1))
    r = m.loss_and_grad(x, y)

    W, U = m.params["W"], m.params["U"]
    fwd = m.forward(x)
    h = fwd.hidden[0][:, 0, :]  # (T, H)
    p = fwd.outputs[:, 0, :]  # (T, O)
    fprime = 1.0 - h**2  # tanh'(a_i) from h_i = tanh(a_i)
    J = [np.diag(fprime[i]) @ W for i in range(T)]  # J[i] = ∂h_i/∂h_{i-1}
    dh_db = [np.diag(fprime[k]) for k in range(T)]  # ∂h_k/∂b_h
    dL_dh = [(p[t] - np.eye(O)[y[t, 0]]) @ U for t in range(T)]  # ∂L_t/∂h_t (row)

    terms = np.zeros((T, T, H))
    for t in range(T):
        for k in range(t + 1):
            prod = np.eye(H)
            for i in range(t, k, -1):  # J_t J_{t-1} ... J_{k+1}
                prod = prod @ J[i]
            terms[t, k] = dL_dh[t] @ prod @ dh_db[k]
    double_sum = terms.sum(axis=(0, 1))

    last_only = dL_dh[T - 1] @ dh_db[T - 1]
    direct_only = sum(dL_dh[t] @ dh_db[t] for t in range(T))
    no_jacobians = sum(dL_dh[t] @ sum(dh_db[k] for k in range(t + 1)) for t in range(T))
    g = r.grads["b_h"]
    return Q4Answer(
        grad=g,
        double_sum=double_sum,
        max_abs_error=float(np.abs(g - double_sum).max()),
        term_norms=np.linalg.norm(terms, axis=2),
        wrong_last_step_only=last_only,
        wrong_direct_only=direct_only,
        wrong_no_jacobians=no_jacobians,
        wrong_errors={
            "last step only": float(np.abs(g - last_only).max()),
            "Σ_t, no earlier steps k < t": float(np.abs(g - direct_only).max()),
            "Σ_t Σ_k without the Jacobian products": float(np.abs(g - no_jacobians).max()),
        },
    )


# --------------------------------------------------------------------------------------
# Exam (a), (c): weight shapes of RNN-A and RNN-B
# --------------------------------------------------------------------------------------
def rnn_a(seed: int = 0) -> bptt.Elman:
    """RNN-A: ``s_t = W_ss s_{t-1} + W_sx x_t``, ``p_t = W_o s_t`` (f1 = f2 = identity, no biases)."""
    return bptt.Elman(2, 2, 2, activation="identity", output="identity", bias=False, notation="mit", seed=seed)


def rnn_b(activation: str = "tanh", output: str = "softmax", output_size: int = 2, seed: int | None = 0) -> bptt.Elman:
    """RNN-B: ``s_t = f1(W_ssx [s_{t-1}; x_t])``, ``p_t = f2(W_ox [s_t; x_t])`` (no biases)."""
    return bptt.Elman(
        2,
        2,
        output_size,
        activation=activation,
        output=output,
        bias=False,
        notation="concat",
        output_reads_input=True,
        seed=seed,
    )


def exam_a() -> dict[str, tuple[int, ...]]:
    """Exam (a): RNN-A's weights and their shapes, read from ``m.params``."""
    return {name: p.shape for name, p in rnn_a().params.items()}


def exam_c() -> dict[str, tuple[int, ...]]:
    """Exam (c): RNN-B's weights and their shapes, read from ``m.params``."""
    return {name: p.shape for name, p in rnn_b().params.items()}


# --------------------------------------------------------------------------------------
# Exam (b): ∂J/∂x_t of RNN-A, library against the closed form
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExamBAnswer:
    """RNN-A's input sensitivity ∂J/∂x_t for every t."""

    library: np.ndarray  # (T, 2): r.grads["x"][:, 0]
    closed_form: np.ndarray  # (T, 2): W_sxᵀ Σ_{k≥t} (W_ssᵀ)^{k-t} W_oᵀ (p_k - y_k)
    max_abs_error: float
    batch_max_abs_error: float  # with B = 2: B · r.grads["x"][:, b] against each sequence's closed form


def _rnn_a_closed_form(W_ss, W_sx, W_o, dz2):
    """``∂J/∂x_t = W_sxᵀ Σ_{k≥t} (W_ssᵀ)^{k-t} W_oᵀ ∂Loss_k/∂z2_k`` for every t; dz2 is (T, 2)."""
    T = dz2.shape[0]
    out = np.zeros((T, W_sx.shape[1]))
    for t in range(T):
        for k in range(t, T):
            out[t] += W_sx.T @ np.linalg.matrix_power(W_ss.T, k - t) @ W_o.T @ dz2[k]
    return out


def exam_b(T: int = 4, seed: int = 3) -> ExamBAnswer:
    """Exam (b): ∂J/∂x_t = W_sxᵀ Σ_{k≥t} (W_ssᵀ)^{k-t} W_oᵀ ∂Loss_k/∂z2_k.

    ``x_t`` reaches ``Loss_k`` for every ``k ≥ t`` via ``s_k = W_ss^{k-t} W_sx x_t + …``;
    with identity output and squared error ``∂Loss_k/∂z2_k = p_k - y_k``.  bptt averages
    ``J`` over the batch, so its gradient is the closed form divided by B.
    """
    rng = np.random.default_rng(seed)
    m = rnn_a(seed=seed)
    W_ss, W_sx, W_o = m.params["W_ss"], m.params["W_sx"], m.params["W_o"]
    x = rng.standard_normal((T, 1, 2))
    y = rng.standard_normal((T, 1, 2))
    r = m.loss_and_grad(x, y)
    closed = _rnn_a_closed_form(W_ss, W_sx, W_o, r.outputs[:, 0] - y[:, 0])

    B = 2
    xb = rng.standard_normal((T, B, 2))
    yb = rng.standard_normal((T, B, 2))
    rb = m.loss_and_grad(xb, yb)
    batch_err = max(
        float(np.abs(B * rb.grads["x"][:, b] - _rnn_a_closed_form(W_ss, W_sx, W_o, rb.outputs[:, b] - yb[:, b])).max())
        for b in range(B)
    )
    return ExamBAnswer(
        library=r.grads["x"][:, 0],
        closed_form=closed,
        max_abs_error=float(np.abs(r.grads["x"][:, 0] - closed).max()),
        batch_max_abs_error=batch_err,
    )


# --------------------------------------------------------------------------------------
# Exam (d), (e): one-to-many generation with RNN-B
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExamDEAnswer:
    """Generations from one start embedding x_1, under each way of feeding p_t back."""

    f2: str  # exam (d): the output activation
    x1: np.ndarray
    probs: bptt.Generation  # x_{t+1} = p_t
    argmax: bptt.Generation  # x_{t+1} = onehot(argmax p_t)
    sample: bptt.Generation  # x_{t+1} = onehot(k), k ~ p_t (seeded)
    sample_again: bptt.Generation  # same seed: the same draws
    embedding: np.ndarray  # E, (O, D) for a 3-word vocabulary with 2-d embeddings
    embedded_argmax: bptt.Generation  # x_{t+1} = E[argmax p_t]
    embedded_probs: bptt.Generation  # x_{t+1} = Eᵀ p_t
    checks: dict[str, bool]


def exam_de(steps: int = 5, seed: int = 4) -> ExamDEAnswer:
    """Exam (d): f2 is a softmax, so p_t is a distribution over words.  Exam (e): x_2 comes from p_1.

    ``x_2 = p_1`` (feed the distribution), or the one-hot vector / embedding of the word
    chosen from ``p_1`` (greedy argmax, or a draw).  Checks that every ``x_{t+1}`` is as
    stated, that every ``p_t`` is a distribution, that a seeded draw repeats, and that
    running the generated inputs through ``forward`` reproduces the outputs.
    """
    m = rnn_b(activation="tanh", output="softmax", seed=seed)
    x1 = np.array([0.8, -0.5])  # the embedding of the input word
    g_probs = bptt.generate(m, x1, steps, feedback="probs")
    g_argmax = bptt.generate(m, x1, steps, feedback="argmax")
    g_sample = bptt.generate(m, x1, steps, feedback="sample", seed=seed)
    g_sample2 = bptt.generate(m, x1, steps, feedback="sample", seed=seed)

    m3 = rnn_b(activation="tanh", output="softmax", output_size=3, seed=seed)
    E = np.random.default_rng(seed).standard_normal((3, 2))
    g_emb = bptt.generate(m3, x1, steps, feedback="argmax", embedding=E)
    g_emb_p = bptt.generate(m3, x1, steps, feedback="probs", embedding=E)

    def onehots(k, n):
        return np.eye(n)[k]

    def distributions(g):
        p = g.outputs
        return bool(np.all(p >= 0) and np.all(p <= 1) and np.allclose(p.sum(-1), 1.0, rtol=0, atol=1e-12))

    def replays(model, g):
        return bool(np.allclose(model.forward(g.inputs).outputs, g.outputs, rtol=0, atol=1e-12))

    checks = {
        "x_1 is the given embedding (every mode)": all(
            np.array_equal(g.inputs[0, 0], x1) for g in (g_probs, g_argmax, g_sample, g_emb, g_emb_p)
        ),
        "probs: x_{t+1} = p_t": np.array_equal(g_probs.inputs[1:], g_probs.outputs[:-1]),
        "argmax: choice_t = argmax p_t": np.array_equal(g_argmax.choices, g_argmax.outputs.argmax(-1)),
        "argmax: x_{t+1} = onehot(choice_t)": np.array_equal(g_argmax.inputs[1:], onehots(g_argmax.choices[:-1], 2)),
        "sample: x_{t+1} = onehot(choice_t)": np.array_equal(g_sample.inputs[1:], onehots(g_sample.choices[:-1], 2)),
        "sample: same seed, same sequence": np.array_equal(g_sample.choices, g_sample2.choices)
        and np.array_equal(g_sample.outputs, g_sample2.outputs),
        "embedding argmax: x_{t+1} = E[choice_t]": np.array_equal(g_emb.inputs[1:], E[g_emb.choices[:-1]]),
        "embedding probs: x_{t+1} = Eᵀ p_t": bool(
            np.allclose(g_emb_p.inputs[1:], g_emb_p.outputs[:-1] @ E, rtol=0, atol=1e-15)
        ),
        "every p_t is a distribution": all(distributions(g) for g in (g_probs, g_argmax, g_sample, g_emb, g_emb_p)),
        "forward(inputs) reproduces the outputs": all(replays(m, g) for g in (g_probs, g_argmax, g_sample))
        and all(replays(m3, g) for g in (g_emb, g_emb_p)),
    }
    return ExamDEAnswer(
        f2=m.output.name,
        x1=x1,
        probs=g_probs,
        argmax=g_argmax,
        sample=g_sample,
        sample_again=g_sample2,
        embedding=E,
        embedded_argmax=g_emb,
        embedded_probs=g_emb_p,
        checks={k: bool(v) for k, v in checks.items()},
    )


# --------------------------------------------------------------------------------------
# Exam (f): which weights does ∂Loss_t/∂x_t of RNN-B depend on?
# --------------------------------------------------------------------------------------
# setting -> (f1, f2 / output, how ∂Loss_t/∂z2_t is obtained, description)
EXAM_F_SETTINGS: dict[str, tuple[str, str, str, str]] = {
    "linear, fixed δ": ("identity", "identity", "fixed", "f1 = f2 = identity, ∂Loss/∂z2 = δ given: the exam's reading"),
    "linear, squared error": ("identity", "identity", "loss", "f1 = f2 = identity, Loss = ½‖p_t - y_t‖²"),
    "tanh, fixed δ": ("tanh", "identity", "fixed", "f1 = tanh, ∂Loss/∂z2 = δ given"),
    "tanh, softmax + CE": ("tanh", "softmax", "loss", "f1 = tanh, f2 = softmax, cross-entropy"),
}
FIXED_DZ2 = np.array([0.7, -1.3])  # the held-fixed ∂Loss_t/∂z2_t in the "fixed" settings


@dataclass(frozen=True)
class ExamFAnswer:
    """Per-element dependence of ∂Loss_t/∂x_t on W_ox and W_ssx (RNN-B, H = D = O = 2)."""

    setting: str
    t: int  # 1-based step
    T: int
    s0_zero: bool
    grad_x_t: np.ndarray  # ∂Loss_t/∂x_t, (2,)
    rel_change_W_ox: np.ndarray  # (2, 4): relative change of ∂Loss_t/∂x_t when that element moves
    rel_change_W_ssx: np.ndarray  # (2, 4)
    mask_W_ox: np.ndarray  # (2, 4) bool: rel_change > REL_THRESHOLD
    mask_W_ssx: np.ndarray  # (2, 4) bool
    statements: dict[str, bool]
    expected_mask_W_ox: np.ndarray | None  # from the hand derivation (linear settings)
    expected_mask_W_ssx: np.ndarray | None
    closed_form_error: float | None  # |library - (W_o W_sx + W_ox^x)ᵀ ∂Loss_t/∂z2_t| (linear settings)


def exam_f_expected_masks(linear_kind: str, t: int, s0_zero: bool = True, H: int = 2, D: int = 2, O: int = 2):
    """The dependence masks of ∂Loss_t/∂x_t derived by hand for linear RNN-B.

    Write the blocks as ``W_ssx = [A | Bx]`` (A = W_ss, the state block; Bx = W_sx, the
    input block) and ``W_ox = [C | Dx]`` (C = W_o, state block; Dx, input block).  With
    f1 = f2 = identity::

        s_t = A s_{t-1} + Bx x_t,      p_t = C s_t + Dx x_t,
        ∂p_t/∂x_t = C Bx + Dx =: M     (x_t → s_t → p_t, plus x_t → p_t directly),
        ∂Loss_t/∂x_t = Mᵀ δ_t,         δ_t = ∂Loss_t/∂z2_t.

    ``M`` contains C, Bx and Dx but never A: the state block of W_ssx only multiplies
    ``s_{t-1}``, which does not depend on ``x_t``.  Element by element (E_ij the unit matrix):

    * Dx_ij: ∂M = E_ij, so ``Mᵀδ`` moves by ``e_j δ_i`` (≠ 0)       → every element of Dx.
    * C_ij:  ∂M = E_ij Bx, moves by ``Bxᵀ e_j δ_i`` (≠ 0)          → every element of C.
    * Bx_ij: ∂M = C E_ij, moves by ``e_j (Cᵀδ)_i`` (≠ 0)           → every element of Bx.
    * A_ij:  ∂M = 0.

    (i) ``linear_kind="fixed"``: δ_t held fixed (the exam: "assume we have ∂Loss/∂z2").
        Then A never enters: W_ox all True, W_ssx input block True, state block False.
    (ii) ``linear_kind="squared"``: δ_t = p_t - y_t = C s_t + Dx x_t - y_t depends on
        everything upstream of p_t, so A enters through ``s_t`` whenever ``s_{t-1}``
        depends on it: ∂s_t/∂A_ij = E_ij s_{t-1} + A ∂s_{t-1}/∂A_ij.  With s_0 = 0,
        ``s_1 = Bx x_1`` does not involve A at all (∂s_1/∂A = 0: no dependence at t = 1);
        at t = 2, ∂s_2/∂A_ij = e_i s_1[j] ≠ 0 and ∂(Mᵀδ_2)/∂A_ij = Mᵀ C e_i s_1[j] ≠ 0,
        so every element of A enters (likewise for t > 2).  With s_0 ≠ 0 already
        ∂s_1/∂A_ij = e_i s_0[j] ≠ 0.  The dependence on C, Bx, Dx only gains terms.
        So: W_ox all True, W_ssx input block True, state block True iff t ≥ 2 or s_0 ≠ 0.

    The "≠ 0" hold for generic (random) weights and inputs, which the examples use.
    """
    mask_ox = np.ones((O, H + D), bool)
    mask_ssx = np.ones((H, H + D), bool)
    if linear_kind == "fixed":
        state_block = False
    elif linear_kind == "squared":
        state_block = t >= 2 or not s0_zero
    else:
        raise ValueError(f"linear_kind must be 'fixed' or 'squared', got {linear_kind!r}")
    mask_ssx[:, :H] = state_block
    return mask_ox, mask_ssx


def _grad_x_t(m: bptt.Elman, x, y, h0, t_idx: int, how: str) -> np.ndarray:
    """∂Loss_t/∂x_t: loss_weights one-hot on step t, or ∂Loss_t/∂z2_t held fixed at FIXED_DZ2."""
    T = x.shape[0]
    if how == "loss":
        w = np.zeros((T, 1))
        w[t_idx] = 1.0
        return m.loss_and_grad(x, y, h0, loss_weights=w).grads["x"][t_idx, 0]
    fwd = m.forward(x, h0)
    d = np.zeros_like(fwd.logits)
    d[t_idx, 0] = FIXED_DZ2
    return m.backward(fwd, d)["x"][t_idx, 0]


def exam_f(setting: str, t: int, T: int = 3, s0_zero: bool = True, seed: int = 5) -> ExamFAnswer:
    """Exam (f): perturb each element of W_ox and W_ssx and see whether ∂Loss_t/∂x_t moves.

    ``∂Loss_t/∂x_t`` is bptt's ``r.grads["x"][t]`` for ``loss_weights`` one-hot on step t
    (``Loss_t`` depends on ``x_1 .. x_t`` only), or, in the "fixed" settings, the gradient
    of ``δᵀ z2_t`` for a constant δ (``m.backward`` with a constant ``∂Loss/∂z2``).
    See :func:`exam_f_expected_masks` for the derivation of the linear answers.  With a
    nonlinear f1 or f2 the same paths carry extra factors::

        ∂Loss_t/∂x_t = (C diag(f1'(a_t)) Bx + Dx)ᵀ δ_t,   a_t = A s_{t-1} + Bx x_t,
        δ_t = ∂Loss_t/∂z2_t  (p_t - onehot(y_t) for softmax + cross-entropy),

    so W_ox (both blocks) and the input block of W_ssx always enter, and the state block A
    enters through ``a_t`` (via f1') and through ``p_t`` (via δ_t) exactly when
    ``s_{t-1}`` is non-zero: not at t = 1 with s_0 = 0 (``a_1 = Bx x_1``), but from
    t = 2 on, or at t = 1 when s_0 ≠ 0.
    """
    f1, f2, how, _ = EXAM_F_SETTINGS[setting]
    rng = np.random.default_rng(seed)
    m = rnn_b(activation=f1, output=f2, seed=seed)
    H = m.layers[0].hidden_size
    x = rng.standard_normal((T, 1, 2))
    y = rng.integers(0, 2, size=(T, 1)) if f2 == "softmax" else rng.standard_normal((T, 1, 2))
    h0 = None if s0_zero else rng.standard_normal((1, H))
    t_idx = t - 1
    g = _grad_x_t(m, x, y, h0, t_idx, how)

    rel = {}
    for name in ("W_ox", "W_ssx"):
        change = np.zeros(m.params[name].shape)
        for ij in np.ndindex(change.shape):
            moved = m.copy()
            moved.params[name][ij] += PERTURBATION
            change[ij] = np.linalg.norm(_grad_x_t(moved, x, y, h0, t_idx, how) - g) / np.linalg.norm(g)
        rel[name] = change
    mask = {name: rel[name] > REL_THRESHOLD for name in rel}
    statements = dict(
        zip(
            EXAM_F_STATEMENTS,
            (
                bool(mask["W_ox"].any()),
                bool(mask["W_ox"].all()),
                bool(mask["W_ssx"].any()),
                bool(mask["W_ssx"].all()),
            ),
            strict=True,
        )
    )

    expected_ox = expected_ssx = None
    closed_err = None
    if f1 == "identity" and f2 == "identity":
        expected_ox, expected_ssx = exam_f_expected_masks("fixed" if how == "fixed" else "squared", t, s0_zero)
        W_ssx, W_ox = m.params["W_ssx"], m.params["W_ox"]
        M = W_ox[:, :H] @ W_ssx[:, H:] + W_ox[:, H:]  # ∂p_t/∂x_t = C Bx + Dx
        delta = FIXED_DZ2 if how == "fixed" else m.forward(x, h0).outputs[t_idx, 0] - y[t_idx, 0]
        closed_err = float(np.abs(g - M.T @ delta).max())
    return ExamFAnswer(
        setting=setting,
        t=t,
        T=T,
        s0_zero=s0_zero,
        grad_x_t=g,
        rel_change_W_ox=rel["W_ox"],
        rel_change_W_ssx=rel["W_ssx"],
        mask_W_ox=mask["W_ox"],
        mask_W_ssx=mask["W_ssx"],
        statements=statements,
        expected_mask_W_ox=expected_ox,
        expected_mask_W_ssx=expected_ssx,
        closed_form_error=closed_err,
    )


def exam_f_all(steps: tuple[int, ...] = (1, 2), T: int = 3) -> list[ExamFAnswer]:
    """Exam (f) for every setting and each step in ``steps`` (s_0 = 0), plus s_0 ≠ 0 at t = 1."""
    answers = [exam_f(setting, t, T) for setting in EXAM_F_SETTINGS for t in steps]
    answers += [exam_f(setting, 1, T, s0_zero=False) for setting in EXAM_F_SETTINGS]
    return answers


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------
def _m(a: np.ndarray, indent: int = 6) -> str:
    text = np.array2string(np.asarray(a), precision=4, suppress_small=True, floatmode="maxprec_equal", sign=" ")
    return text.replace("\n", "\n" + " " * indent)


def _mask(mask: np.ndarray, H: int = 2) -> str:
    """A (rows, H + D) bool mask as 1/0 with the state | input blocks separated."""
    rows = []
    for row in mask.astype(int):
        rows.append(" ".join(map(str, row[:H])) + " | " + " ".join(map(str, row[H:])))
    return "; ".join(f"[{r}]" for r in rows)


def _holds(v: bool) -> str:
    return f"holds: {bool(v)}"


def main() -> None:
    start = time.perf_counter()
    np.set_printoptions(linewidth=120)
    print("=" * 88)
    print("Seed questions answered by bptt (quiz 'RNN and Backpropagation', exam 'We Recur!')")
    print("=" * 88)

    q1 = quiz_q1()
    print("\nQuiz Q1 - fixed-length inputs: is an RNN still useful?  Answer:", q1.answer)
    print(f"  many-to-one over T = {q1.T} steps, loss_weights = 1 only on the last step")
    print(f"  loss = {q1.loss:.12f}; with every earlier target changed: {q1.loss_other_earlier_targets:.12f}")
    print(f"  loss unchanged: {q1.loss_unchanged}, every gradient unchanged: {q1.grads_unchanged}")
    print(f"  (scored at every step instead: {q1.full_loss:.6f} vs {q1.full_loss_other_earlier_targets:.6f})")
    print(f"  ‖∂J/∂x_t‖, t = 1..T (every input still shapes the answer): {_m(q1.input_grad_norms)}")

    q2 = quiz_q2()
    print(f"\nQuiz Q2 - language model with N = {q2.N} words (softmax output, token-id input)")
    print(f"  ŷ has shape (T, B, N) = {q2.shape}; entries in [{q2.min_entry:.4f}, {q2.max_entry:.4f}]")
    print(f"  max |Σ_n ŷ_t[n] - 1| = {q2.max_sum_error:.1e}")
    print(f"  ŷ_1 of sequence 1: {_m(q2.example)}")
    for option, ok in q2.options.items():
        mark = "☒" if q2.quiz_marks[option] else "☐"
        note = "  (true but loose: no entry exceeds 1)" if ok and not q2.quiz_marks[option] else ""
        print(f"  {mark} {option:46s} {_holds(ok)}{note}")

    q3 = quiz_q3()
    print("\nQuiz Q3 - ∂L/∂b_y = Σ_t (∂L/∂ŷ_t)(∂ŷ_t/∂b_y)")
    print(f"  r.grads['b_y']           = {_m(q3.grad, 29)}")
    for t, term in enumerate(q3.step_terms, 1):
        print(f"  term t = {t} (one-hot w)   = {_m(term, 29)}")
    print(f"  Σ_t terms                = {_m(q3.sum_of_terms, 29)}")
    print(f"  max |grad - Σ_t terms| = {q3.max_abs_error:.1e}")
    print(f"  max |grad - (1/B) Σ_t Σ_b (p_t - y_t)| = {q3.residual_sum_error:.1e}  (the same terms from residuals)")
    print(f"  wrong option 'one term': max |grad - term_t| for t = 1..T = {_m(q3.single_term_errors)}")
    print(
        f"  wrong options through h_t: h_t depends on b_y: {q3.hidden_depends_on_b_y}, "
        f"so ∂h_t/∂b_y = 0 and they give {_m(q3.wrong_through_h)}"
    )

    q4 = quiz_q4()
    print("\nQuiz Q4 - ∂L/∂b_h = Σ_t ∂L_t/∂h_t Σ_{k≤t} (Π_{i=k+1..t} ∂h_i/∂h_{i-1}) ∂h_k/∂b_h  (B = 1)")
    print(f"  r.grads['b_h']                 = {_m(q4.grad)}")
    print(f"  explicit double sum            = {_m(q4.double_sum)}")
    print(f"  max |difference| = {q4.max_abs_error:.1e}")
    print("  ‖term(t, k)‖ (rows t = 1..T, columns k = 1..T; step k reaches L_t through t - k Jacobians):")
    print("      " + _m(q4.term_norms))
    print(f"  wrong: last step only          = {_m(q4.wrong_last_step_only)}")
    print(f"  wrong: Σ_t direct terms only   = {_m(q4.wrong_direct_only)}")
    print(f"  wrong: Σ_t Σ_k, no Jacobians   = {_m(q4.wrong_no_jacobians)}")
    for name, err in q4.wrong_errors.items():
        print(f"    max |grad - ({name})| = {err:.4f}")

    print("\nExam (a) - RNN-A weight shapes:", exam_a())

    b = exam_b()
    print("\nExam (b) - RNN-A: ∂J/∂x_t = W_sxᵀ Σ_{k≥t} (W_ssᵀ)^{k-t} W_oᵀ ∂Loss_k/∂z2_k")
    for t in range(b.library.shape[0]):
        print(f"  t = {t + 1}: library {_m(b.library[t])}   closed form {_m(b.closed_form[t])}")
    print(
        f"  max |difference| = {b.max_abs_error:.1e}; with B = 2, B · grads['x'] vs closed form: "
        f"{b.batch_max_abs_error:.1e}"
    )

    print("\nExam (c) - RNN-B weight shapes:", exam_c())

    de = exam_de()
    print(f"\nExam (d) - f2 for one-to-many word generation: {de.f2} (p_t is a distribution over words)")
    print("Exam (e) - x_2 comes from p_1: x_2 = p_1, or the one-hot vector / embedding of the word chosen from p_1")
    print(f"  start x_1 = {_m(de.x1)}")
    modes = (("probs  (x_{t+1} = p_t)", de.probs), ("argmax (one-hot)", de.argmax), ("sample (one-hot)", de.sample))
    for label, g in modes:
        print(f"  {label}:")
        print(f"    inputs  x_t: {_m(g.inputs[:, 0], 17)}")
        print(f"    outputs p_t: {_m(g.outputs[:, 0], 17)}")
        if g.choices is not None:
            print(f"    choices    : {g.choices[:, 0]}")
    print(f"  embedding variant, 3 words, E = {_m(de.embedding, 36)}")
    print(f"    argmax choices: {de.embedded_argmax.choices[:, 0]}")
    print(f"    inputs x_t = E[choice_(t-1)]: {_m(de.embedded_argmax.inputs[:, 0], 34)}")
    for name, ok in de.checks.items():
        print(f"  {name:52s} {_holds(ok)}")

    print("\nExam (f) - RNN-B: what does ∂Loss_t/∂x_t depend on?  (T = 3; masks are [state block | input block],")
    print(f"  1 = moving that element by {PERTURBATION} changes ∂Loss_t/∂x_t by more than {REL_THRESHOLD} relative)")
    answers_f = exam_f_all()
    for f in answers_f:
        s0 = "s_0 = 0" if f.s0_zero else "s_0 ≠ 0"
        print(f"  {f.setting} ({EXAM_F_SETTINGS[f.setting][3]}), t = {f.t}, {s0}:")
        print(f"    ∂Loss_t/∂x_t = {_m(f.grad_x_t)}")
        print(f"    W_ox  mask {_mask(f.mask_W_ox)}    W_ssx mask {_mask(f.mask_W_ssx)}")
        moved = np.concatenate([f.rel_change_W_ox[f.mask_W_ox], f.rel_change_W_ssx[f.mask_W_ssx]])
        still = np.concatenate([f.rel_change_W_ox[~f.mask_W_ox], f.rel_change_W_ssx[~f.mask_W_ssx]])
        print(
            f"    relative change: smallest counted {moved.min():.1e}, largest not counted "
            f"{still.max() if still.size else 0.0:.1e}"
        )
        if f.expected_mask_W_ssx is not None:
            agree = np.array_equal(f.mask_W_ox, f.expected_mask_W_ox) and np.array_equal(
                f.mask_W_ssx, f.expected_mask_W_ssx
            )
            print(f"    hand derivation agrees: {agree}; closed form (CBx + Dx)ᵀδ error {f.closed_form_error:.1e}")
    print("\n  Summary of (f): which statements hold (columns in the exam's order)")
    widths = (34, *map(len, EXAM_F_STATEMENTS))
    header = ("setting, step", *EXAM_F_STATEMENTS)
    print("  " + " | ".join(f"{s:{w}s}" for s, w in zip(header, widths, strict=True)))
    for f in answers_f:
        case = f"{f.setting}, t={f.t}" + ("" if f.s0_zero else ", s_0≠0")
        cells = (case, *map(str, f.statements.values()))
        print("  " + " | ".join(f"{s:{w}s}" for s, w in zip(cells, widths, strict=True)))
    print("  The exam's reading (∂Loss/∂z2 given, linear): W_ox yes, all of W_ox yes, W_ssx yes, all of W_ssx NO;")
    print("  once ∂Loss/∂z2 or f1' depends on the state (squared error, softmax, tanh) all of W_ssx enters")
    print("  from t = 2 on (or at t = 1 if s_0 ≠ 0).")

    print(f"\nDone in {time.perf_counter() - start:.2f} s.")


if __name__ == "__main__":
    main()
