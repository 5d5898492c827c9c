"""The seed questions (course quiz, "We Recur!" exam) answered by examples/seed_questions.py."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seed_questions.py"


@pytest.fixture(scope="module")
def sq():
    spec = importlib.util.spec_from_file_location("seed_questions", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


# -- quiz ------------------------------------------------------------------------------
def test_q1_many_to_one_depends_only_on_the_last_target(sq):
    a = sq.quiz_q1()
    assert a.answer == "Yes"
    assert a.loss_unchanged and a.loss == a.loss_other_earlier_targets
    assert a.grads_unchanged
    # the same change matters once every step is scored, so the check above is not vacuous
    assert abs(a.full_loss - a.full_loss_other_earlier_targets) > 1e-3
    # the whole fixed-length input is still used: every x_t receives gradient
    assert a.input_grad_norms.shape == (a.T,)
    assert np.all(a.input_grad_norms > 0)


def test_q2_outputs_are_length_n_distributions(sq):
    a = sq.quiz_q2(N=10, T=5, B=3)
    assert a.shape == (5, 3, 10)
    assert 0.0 <= a.min_entry and a.max_entry <= 1.0
    assert 0.0 < a.min_entry and a.max_entry < 1.0  # strictly inside: not 0/1 values
    assert a.max_sum_error < 1e-12
    assert a.example.shape == (10,)
    assert a.options == {
        "ŷ_t is a vector of length N": True,
        "ŷ_t is a vector of length (L - t)": False,
        "ŷ_t is a vector of length L × N": False,
        "each element of ŷ_t is either 0 or 1": False,
        "each element of ŷ_t is a number from 0 to 1": True,
        "each element of ŷ_t is a number from 0 to N": True,
    }
    assert [k for k, v in a.quiz_marks.items() if v] == [
        "ŷ_t is a vector of length N",
        "each element of ŷ_t is a number from 0 to 1",
    ]


@pytest.mark.parametrize("T, B, seed", [(5, 2, 1), (7, 3, 8)])
def test_q3_b_y_gradient_is_the_sum_of_per_step_terms(sq, T, B, seed):
    a = sq.quiz_q3(T=T, B=B, seed=seed)
    assert a.step_terms.shape == (T, a.grad.shape[0])
    assert np.abs(a.grad - a.step_terms.sum(axis=0)).max() < 1e-12
    assert a.max_abs_error < 1e-12 and a.residual_sum_error < 1e-12
    # wrong options: a single term is a different number for every t ...
    assert np.all(a.single_term_errors > 1e-3)
    # ... and the options through h_t are zero, since h_t does not depend on b_y
    assert not a.hidden_depends_on_b_y
    assert np.all(a.wrong_through_h == 0) and np.abs(a.grad).max() > 1e-3


@pytest.mark.parametrize("T, seed", [(5, 2), (8, 13)])
def test_q4_b_h_gradient_is_the_double_sum_with_jacobian_products(sq, T, seed):
    a = sq.quiz_q4(T=T, seed=seed)
    assert a.double_sum.shape == a.grad.shape
    assert np.abs(a.grad - a.double_sum).max() < 1e-12
    assert a.max_abs_error < 1e-12
    assert a.term_norms.shape == (T, T)
    assert np.all(np.triu(a.term_norms, k=1) == 0)  # no term with k > t
    assert np.all(a.term_norms[np.tril_indices(T)] > 0)  # every earlier step k ≤ t contributes
    for option in (a.wrong_last_step_only, a.wrong_direct_only, a.wrong_no_jacobians):
        assert np.abs(a.grad - option).max() > 1e-3
    assert set(a.wrong_errors) == {
        "last step only",
        "Σ_t, no earlier steps k < t",
        "Σ_t Σ_k without the Jacobian products",
    }
    assert all(err > 1e-3 for err in a.wrong_errors.values())


# -- exam (a) - (e) --------------------------------------------------------------------
def test_exam_a_rnn_a_shapes(sq):
    assert sq.exam_a() == {"W_ss": (2, 2), "W_sx": (2, 2), "W_o": (2, 2)}


def test_exam_c_rnn_b_shapes(sq):
    assert sq.exam_c() == {"W_ssx": (2, 4), "W_ox": (2, 4)}


@pytest.mark.parametrize("T, seed", [(4, 3), (6, 21)])
def test_exam_b_input_gradient_closed_form(sq, T, seed):
    a = sq.exam_b(T=T, seed=seed)
    assert a.library.shape == a.closed_form.shape == (T, 2)
    for t in range(T):
        np.testing.assert_allclose(a.library[t], a.closed_form[t], rtol=0, atol=1e-12)
    assert a.max_abs_error < 1e-12
    assert a.batch_max_abs_error < 1e-12  # J averages over the batch: B · grads["x"] is the closed form
    assert np.abs(a.closed_form).max() > 1e-3


def test_exam_de_generation_feeds_outputs_back(sq):
    steps = 6
    a = sq.exam_de(steps=steps, seed=4)
    assert a.f2 == "softmax"
    assert all(a.checks.values()), a.checks
    eye = np.eye(2)
    for g in (a.probs, a.argmax, a.sample, a.sample_again):
        assert g.inputs.shape == (steps, 1, 2) and g.outputs.shape == (steps, 1, 2)
        np.testing.assert_array_equal(g.inputs[0, 0], a.x1)
        assert np.all((g.outputs >= 0) & (g.outputs <= 1))
        np.testing.assert_allclose(g.outputs.sum(-1), 1.0, rtol=0, atol=1e-12)
    # probs: x_{t+1} = p_t
    assert a.probs.choices is None
    for t in range(steps - 1):
        np.testing.assert_array_equal(a.probs.inputs[t + 1], a.probs.outputs[t])
    # argmax: x_{t+1} = onehot(argmax p_t)
    np.testing.assert_array_equal(a.argmax.choices, a.argmax.outputs.argmax(-1))
    for t in range(steps - 1):
        np.testing.assert_array_equal(a.argmax.inputs[t + 1], eye[a.argmax.choices[t]])
    # sample: x_{t+1} = onehot(k_t), reproducible under the same seed
    for t in range(steps - 1):
        np.testing.assert_array_equal(a.sample.inputs[t + 1], eye[a.sample.choices[t]])
    np.testing.assert_array_equal(a.sample.choices, a.sample_again.choices)
    np.testing.assert_array_equal(a.sample.outputs, a.sample_again.outputs)
    # embedding variant: x_{t+1} = E[k_t] (argmax) or Eᵀ p_t (probs)
    E = a.embedding
    assert E.shape == (3, 2)
    g = a.embedded_argmax
    assert g.outputs.shape == (steps, 1, 3)
    for t in range(steps - 1):
        np.testing.assert_array_equal(g.inputs[t + 1], E[g.choices[t]])
    gp = a.embedded_probs
    for t in range(steps - 1):
        np.testing.assert_allclose(gp.inputs[t + 1], gp.outputs[t] @ E, rtol=0, atol=1e-15)


# -- exam (f) --------------------------------------------------------------------------
STATEMENTS = (
    "depends on W_ox",
    "depends on all elements of W_ox",
    "depends on W_ssx",
    "depends on all elements of W_ssx",
)


def _separated(a):
    """Counted changes are far above the threshold, the others are rounding at most."""
    moved = np.concatenate([a.rel_change_W_ox[a.mask_W_ox], a.rel_change_W_ssx[a.mask_W_ssx]])
    still = np.concatenate([a.rel_change_W_ox[~a.mask_W_ox], a.rel_change_W_ssx[~a.mask_W_ssx]])
    return moved.min() > 1e-7 and (still.size == 0 or still.max() < 1e-13)


@pytest.mark.parametrize("s0_zero", [True, False])
@pytest.mark.parametrize("t", [1, 2, 3])
def test_exam_f_linear_exam_reading_never_involves_the_state_block(sq, t, s0_zero):
    """∂Loss/∂z2 given (the exam): ∂Loss_t/∂x_t = (W_o W_sx + W_ox^x)ᵀ δ, no W_ss."""
    a = sq.exam_f("linear, fixed δ", t, T=3, s0_zero=s0_zero)
    assert np.all(a.mask_W_ox)
    assert not a.mask_W_ssx[:, :2].any() and a.mask_W_ssx[:, 2:].all()
    np.testing.assert_array_equal(a.mask_W_ox, a.expected_mask_W_ox)
    np.testing.assert_array_equal(a.mask_W_ssx, a.expected_mask_W_ssx)
    assert a.statements == dict(zip(STATEMENTS, (True, True, True, False), strict=True))
    assert a.closed_form_error < 1e-12
    assert _separated(a)


@pytest.mark.parametrize("s0_zero", [True, False])
@pytest.mark.parametrize("t", [1, 2, 3])
def test_exam_f_linear_squared_error_matches_the_hand_derivation(sq, t, s0_zero):
    """Squared error: δ_t = p_t - y_t brings W_ss in through s_t once s_{t-1} ≠ 0."""
    a = sq.exam_f("linear, squared error", t, T=3, s0_zero=s0_zero)
    state_block = t >= 2 or not s0_zero
    expected_ssx = np.ones((2, 4), bool)
    expected_ssx[:, :2] = state_block
    np.testing.assert_array_equal(a.mask_W_ox, np.ones((2, 4), bool))
    np.testing.assert_array_equal(a.mask_W_ssx, expected_ssx)
    np.testing.assert_array_equal(a.mask_W_ox, a.expected_mask_W_ox)
    np.testing.assert_array_equal(a.mask_W_ssx, a.expected_mask_W_ssx)
    assert a.statements == dict(zip(STATEMENTS, (True, True, True, state_block), strict=True))
    assert a.closed_form_error < 1e-12
    assert _separated(a)


@pytest.mark.parametrize("setting", ["tanh, fixed δ", "tanh, softmax + CE"])
@pytest.mark.parametrize("s0_zero", [True, False])
@pytest.mark.parametrize("t", [1, 2, 3])
def test_exam_f_nonlinear_statements(sq, setting, t, s0_zero):
    a = sq.exam_f(setting, t, T=3, s0_zero=s0_zero)
    # the paths x_t -> p_t (input block of W_ox) and x_t -> s_t -> p_t (state block of W_ox,
    # input block of W_ssx) always carry the gradient
    assert a.statements["depends on W_ox"] and a.statements["depends on all elements of W_ox"]
    assert a.statements["depends on W_ssx"]
    assert a.mask_W_ssx[:, 2:].all()
    # W_ss enters through f1'(a_t) and p_t, i.e. through s_{t-1}, which is 0 only at t = 1 with s_0 = 0
    state_block = t >= 2 or not s0_zero
    assert np.all(a.mask_W_ssx[:, :2] == state_block)
    assert a.statements["depends on all elements of W_ssx"] == state_block
    assert a.expected_mask_W_ssx is None and a.closed_form_error is None
    assert _separated(a)


def test_exam_f_expected_masks_rejects_unknown_kind(sq):
    with pytest.raises(ValueError, match="linear_kind"):
        sq.exam_f_expected_masks("cubic", 1)


# -- the script ------------------------------------------------------------------------
def test_main_prints_the_report_quickly(sq, capsys):
    start = time.perf_counter()
    sq.main()
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out
    assert elapsed < 5.0
    for heading in ("Quiz Q1", "Quiz Q2", "Quiz Q3", "Quiz Q4", *(f"Exam ({c})" for c in "abcdef")):
        assert heading in out
    assert "holds: False" in out and "holds: True" in out
    assert "hand derivation agrees: False" not in out
