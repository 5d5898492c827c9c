"""Optimizers, schedules and gradient clipping, checked against torch.optim in float64."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch

import bptt
from bptt.optim import SGD, Adagrad, Adam, AdamW, RMSprop, clip_grad_norm, clip_grad_value, make_optimizer
from bptt.schedules import Schedule

SHAPES = {"W": (4, 3), "b": (4,), "U": (2, 4)}
STEPS = 10


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s) for k, s in SHAPES.items()}


def _grads(n=STEPS, seed=1, scale=1.0):
    rng = np.random.default_rng(seed)
    return [{k: scale * rng.standard_normal(s) for k, s in SHAPES.items()} for _ in range(n)]


def _run_bptt(cls, kwargs, params, grads):
    opt = cls(params, **kwargs)
    for g in grads:
        opt.step(g)
    return params


def _run_torch(cls, kwargs, params, grads, scheduler=None):
    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    opt = cls(list(tp.values()), **kwargs)
    sched = scheduler(opt) if scheduler is not None else None
    for g in grads:
        for k, p in tp.items():
            p.grad = torch.tensor(g[k], dtype=torch.float64)
        opt.step()
        if sched is not None:
            sched.step()
    return {k: p.detach().numpy() for k, p in tp.items()}


def _assert_close(got, want, rtol=1e-12):
    assert got.keys() == want.keys()
    for k in got:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=rtol * 1e-2, err_msg=k)


# (bptt class, bptt kwargs, torch class, torch kwargs)
CASES = {
    "sgd": (SGD, dict(lr=0.1), torch.optim.SGD, dict(lr=0.1)),
    "sgd-momentum": (SGD, dict(lr=0.05, momentum=0.9), torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    "sgd-nesterov": (
        SGD,
        dict(lr=0.05, momentum=0.8, nesterov=True),
        torch.optim.SGD,
        dict(lr=0.05, momentum=0.8, nesterov=True),
    ),
    "sgd-weight-decay": (
        SGD,
        dict(lr=0.05, momentum=0.7, weight_decay=0.1),
        torch.optim.SGD,
        dict(lr=0.05, momentum=0.7, weight_decay=0.1),
    ),
    "sgd-nesterov-weight-decay": (
        SGD,
        dict(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.3),
        torch.optim.SGD,
        dict(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.3),
    ),
    "adagrad": (Adagrad, dict(lr=0.1, eps=1e-8), torch.optim.Adagrad, dict(lr=0.1, eps=1e-8)),
    "adagrad-weight-decay": (
        Adagrad,
        dict(lr=0.1, eps=1e-6, weight_decay=0.05),
        torch.optim.Adagrad,
        dict(lr=0.1, eps=1e-6, weight_decay=0.05),
    ),
    "rmsprop": (RMSprop, dict(lr=0.01), torch.optim.RMSprop, dict(lr=0.01, alpha=0.99, eps=1e-8)),
    "rmsprop-alpha": (
        RMSprop,
        dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.02),
        torch.optim.RMSprop,
        dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.02),
    ),
    "adam": (Adam, dict(lr=0.01), torch.optim.Adam, dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8)),
    "adam-betas-l2": (
        Adam,
        dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
        torch.optim.Adam,
        dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
    ),
    "adamw-default-decay": (AdamW, dict(lr=0.01), torch.optim.AdamW, dict(lr=0.01, weight_decay=0.01)),
    "adamw": (
        AdamW,
        dict(lr=0.05, betas=(0.85, 0.99), eps=1e-7, weight_decay=0.5),
        torch.optim.AdamW,
        dict(lr=0.05, betas=(0.85, 0.99), eps=1e-7, weight_decay=0.5),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_torch_optim(case):
    cls, kw, tcls, tkw = CASES[case]
    grads = _grads()
    want = _run_torch(tcls, tkw, _params(), grads)
    got = _run_bptt(cls, kw, _params(), grads)
    _assert_close(got, want)
    # the parameters really moved (a no-op optimizer would fail the comparison only by luck)
    assert not np.allclose(got["W"], _params()["W"])


def test_weight_decay_changes_the_result():
    # guards against weight_decay silently being ignored in both implementations' comparison
    grads = _grads()
    plain = _run_bptt(Adam, dict(lr=0.01), _params(), grads)
    decayed = _run_bptt(Adam, dict(lr=0.01, weight_decay=0.5), _params(), grads)
    decoupled = _run_bptt(AdamW, dict(lr=0.01, weight_decay=0.5), _params(), grads)
    assert not np.allclose(plain["W"], decayed["W"])
    assert not np.allclose(decayed["W"], decoupled["W"])


def test_defaults_match_torch_defaults():
    grads = _grads()
    for cls, tcls in ((RMSprop, torch.optim.RMSprop), (Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW)):
        _assert_close(
            _run_bptt(cls, dict(lr=0.01), _params(), grads), _run_torch(tcls, dict(lr=0.01), _params(), grads)
        )


def test_first_sgd_step_is_exact():
    p = {"w": np.array([1.0, -2.0])}
    SGD(p, lr=0.5, momentum=0.9).step({"w": np.array([0.2, 0.4])})
    np.testing.assert_array_equal(p["w"], [0.9, -2.2])


def test_step_updates_in_place_ignores_extra_grads_and_does_not_touch_grads():
    params = _params()
    ids = {k: id(v) for k, v in params.items()}
    grads = _grads(1)[0]
    grads["h0"] = np.full(5, np.nan)  # extra keys (state gradients) are ignored
    before = copy.deepcopy(grads)
    opt = Adam(params, lr=0.1, weight_decay=0.1)
    opt.step(grads)
    assert {k: id(v) for k, v in params.items()} == ids
    for k in before:
        np.testing.assert_array_equal(grads[k], before[k])
    assert all(np.isfinite(v).all() for v in params.values())
    assert opt.steps == 1


def test_make_optimizer_by_name():
    for name, cls in (("sgd", SGD), ("adagrad", Adagrad), ("rmsprop", RMSprop), ("adam", Adam), ("adamw", AdamW)):
        assert type(make_optimizer(name, _params(), 0.1)) is cls
    opt = make_optimizer("sgd", _params(), 0.1, momentum=0.5, nesterov=True)
    assert opt.momentum == 0.5 and opt.nesterov
    with pytest.raises(ValueError, match=r"optimizer must be one of .*'adam'.*got 'lbfgs'"):
        make_optimizer("lbfgs", _params(), 0.1)


def test_adagrad_adds_eps_after_the_square_root_like_torch_not_inside_like_min_char_rnn():
    # From G = 0 one step is lr·g / (|g| + ε) (PyTorch); min-char-rnn's lr·g / √(g² + ε) differs.
    g = np.array([1e-4, -3e-5, 2.0])
    lr, eps = 0.1, 1e-8
    p = {"w": np.zeros(3)}
    Adagrad(p, lr=lr, eps=eps).step({"w": g})
    np.testing.assert_allclose(p["w"], -lr * g / (np.abs(g) + eps), rtol=1e-15)
    min_char_rnn = -lr * g / np.sqrt(g * g + eps)
    assert not np.allclose(p["w"], min_char_rnn, rtol=1e-3)


def test_optimizer_trains_a_real_model():
    m = bptt.Elman(3, 8, 3, seed=0)
    x = np.array([[0], [1], [2], [0], [1], [2]])
    y = np.array([[1], [2], [0], [1], [2], [0]])
    first = m.loss(x, y)
    opt = Adam(m.params, lr=0.05)
    for _ in range(60):
        opt.step(m.loss_and_grad(x, y).grads)
    assert m.loss(x, y) < 0.25 * first


# -- schedules -----------------------------------------------------------------------


def test_schedule_as_lr_matches_torch_lambda_lr():
    sched = Schedule(lr=0.1, kind="cosine", warmup=3, total_steps=10, min_lr=0.01)
    grads = _grads(14)  # past total_steps: the floor holds
    got = _run_bptt(Adam, dict(lr=sched), _params(), grads)
    want = _run_torch(
        torch.optim.Adam,
        dict(lr=0.1),
        _params(),
        grads,
        scheduler=lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: sched(s) / sched.lr),
    )
    _assert_close(got, want)


def test_schedule_as_lr_uses_step_zero_first_and_counts_steps():
    sched = Schedule(lr=1.0, kind="step", step_size=2, gamma=0.1)
    p = {"w": np.zeros(1)}
    opt = SGD(p, lr=sched)
    used = []
    for _ in range(5):
        used.append(opt.current_lr())
        before = p["w"].copy()
        opt.step({"w": np.ones(1)})
        np.testing.assert_allclose(before - p["w"], used[-1], rtol=1e-12)
    np.testing.assert_allclose(used, [1.0, 1.0, 0.1, 0.1, 0.01], rtol=1e-15)


def test_schedule_manual_sgd_matches_torch_with_manual_lr():
    sched = Schedule(lr=0.2, kind="step", warmup=2, step_size=3, gamma=0.5)
    grads = _grads(12)
    got = _run_bptt(SGD, dict(lr=sched, momentum=0.9), _params(), grads)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in _params().items()}
    opt = torch.optim.SGD(list(tp.values()), lr=1.0, momentum=0.9)
    for i, g in enumerate(grads):
        opt.param_groups[0]["lr"] = sched(i)
        for k, p in tp.items():
            p.grad = torch.tensor(g[k])
        opt.step()
    _assert_close(got, {k: p.detach().numpy() for k, p in tp.items()})


def test_schedule_constant_with_warmup():
    s = Schedule(lr=0.1, warmup=4)
    np.testing.assert_allclose([s(i) for i in range(7)], [0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1], rtol=1e-15)
    assert Schedule(lr=0.3)(0) == 0.3 and Schedule(lr=0.3)(10**6) == 0.3


def test_schedule_cosine_with_warmup():
    s = Schedule(lr=1.0, kind="cosine", warmup=2, total_steps=6, min_lr=0.1)
    c = math.sqrt(0.5)
    want = [0.5, 1.0, 1.0, 0.1 + 0.45 * (1 + c), 0.55, 0.1 + 0.45 * (1 - c), 0.1, 0.1, 0.1]
    np.testing.assert_allclose([s(i) for i in range(9)], want, rtol=1e-14)
    assert s(1000) == pytest.approx(0.1)
    # without warmup the first step is the peak and the curve is monotone down to min_lr
    s = Schedule(lr=2.0, kind="cosine", total_steps=100)
    values = [s(i) for i in range(101)]
    assert values[0] == 2.0 and values[50] == pytest.approx(1.0) and values[100] == pytest.approx(0.0, abs=1e-15)
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_schedule_step_with_warmup():
    s = Schedule(lr=1.0, kind="step", warmup=2, step_size=3, gamma=0.5)
    want = [0.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]
    np.testing.assert_allclose([s(i) for i in range(12)], want, rtol=1e-15)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(lr=0.0), r"lr must be a finite number > 0, got 0.0"),
        (dict(lr=-1.0), r"lr must be a finite number > 0, got -1.0"),
        (dict(lr=float("nan")), r"lr must be a finite number"),
        (dict(lr=0.1, kind="linear"), r"kind must be one of \['constant', 'cosine', 'step'\], got 'linear'"),
        (dict(lr=0.1, kind="cosine"), r"cosine needs total_steps > warmup \(0\), got None"),
        (dict(lr=0.1, kind="cosine", warmup=10, total_steps=10), r"cosine needs total_steps > warmup \(10\)"),
        (dict(lr=0.1, warmup=-1), r"warmup must be an integer ≥ 0"),
        (dict(lr=0.1, warmup=1.5), r"warmup must be an integer ≥ 0"),
        (dict(lr=0.1, kind="step", step_size=0), r"step_size must be a positive integer"),
        (dict(lr=0.1, gamma=float("inf")), r"gamma must be a finite number"),
    ],
)
def test_schedule_validation(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        Schedule(**kwargs)


# -- state dict ----------------------------------------------------------------------


OPTIMIZERS_FOR_RESUME = [
    (SGD, dict(lr=0.05)),
    (SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (Adagrad, dict(lr=0.1)),
    (RMSprop, dict(lr=0.01)),
    (Adam, dict(lr=Schedule(lr=0.01, kind="cosine", warmup=2, total_steps=12))),
    (AdamW, dict(lr=0.01, weight_decay=0.1)),
]


@pytest.mark.parametrize("cls, kw", OPTIMIZERS_FOR_RESUME, ids=lambda v: getattr(v, "__name__", ""))
def test_state_dict_round_trip_continues_bitwise(cls, kw):
    grads = _grads(12)
    ref_params = _params()
    ref = cls(ref_params, **kw)
    for g in grads[:5]:
        ref.step(g)
    arrays, scalars = ref.state_dict()
    arrays = {k: v.copy() for k, v in arrays.items()}  # a snapshot, as a checkpoint would hold
    scalars = copy.deepcopy(scalars)
    assert scalars == {"name": cls.name, "steps": 5}
    resumed_params = {k: v.copy() for k, v in ref_params.items()}
    for g in grads[5:]:
        ref.step(g)

    resumed = cls(resumed_params, **kw)
    resumed.load_state_dict(arrays, scalars)
    assert resumed.steps == 5
    for g in grads[5:]:
        resumed.step(g)
    for k in ref_params:
        np.testing.assert_array_equal(resumed_params[k], ref_params[k], err_msg=k)

    # without the state (momenta, step count) the continuation differs: the state really matters
    if arrays or isinstance(kw["lr"], Schedule):
        forgetful_params = _params()
        forgetful = cls(forgetful_params, **kw)
        for g in grads[:5]:
            forgetful.step(g)
        forgetful = cls(forgetful_params, **kw)
        for g in grads[5:]:
            forgetful.step(g)
        assert not np.array_equal(forgetful_params["W"], ref_params["W"])


def test_state_dict_names_arrays_by_slot_and_param():
    arrays, scalars = Adam(_params(), lr=0.1).state_dict()
    assert set(arrays) == {f"{slot}/{k}" for slot in ("m", "v") for k in SHAPES}
    assert all(arrays[f"m/{k}"].shape == s for k, s in SHAPES.items())
    assert scalars == {"name": "adam", "steps": 0}
    assert SGD(_params(), lr=0.1).state_dict() == ({}, {"name": "sgd", "steps": 0})


def test_load_state_dict_refuses_mismatches():
    arrays, scalars = Adam(_params(), lr=0.1).state_dict()
    with pytest.raises(ValueError, match=r"state is for optimizer 'adam', not 'adamw'"):
        AdamW(_params(), lr=0.1).load_state_dict(arrays, scalars)
    bad = dict(arrays, **{"m/W": np.zeros((3, 3))})
    with pytest.raises(ValueError, match=r"m/W must have shape \(4, 3\), got \(3, 3\)"):
        Adam(_params(), lr=0.1).load_state_dict(bad, scalars)
    missing = {k: v for k, v in arrays.items() if k != "v/b"}
    with pytest.raises(ValueError, match=r"v/b must have shape \(4,\), got nothing"):
        Adam(_params(), lr=0.1).load_state_dict(missing, scalars)


# -- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda p: SGD(p, lr=0), r"SGD: lr must be a finite number > 0, got 0"),
        (lambda p: SGD(p, lr=-0.1), r"SGD: lr must be a finite number > 0, got -0.1"),
        (lambda p: Adam(p, lr=float("nan")), r"Adam: lr must be a finite number > 0, got nan"),
        (lambda p: Adam(p, lr=float("inf")), r"Adam: lr must be a finite number > 0, got inf"),
        (lambda p: SGD(p, lr="0.1"), r"SGD: lr must be a finite number > 0, got '0.1'"),
        (lambda p: SGD(p, lr=True), r"SGD: lr must be a finite number > 0, got True"),
        (lambda p: SGD(p, lr=0.1, momentum=1.0), r"SGD: momentum must be a finite number in \[0, 1\), got 1.0"),
        (lambda p: SGD(p, lr=0.1, momentum=-0.5), r"SGD: momentum must be a finite number in \[0, 1\), got -0.5"),
        (lambda p: SGD(p, lr=0.1, nesterov=True), r"SGD: nesterov=True needs momentum > 0"),
        (lambda p: SGD(p, lr=0.1, weight_decay=-1e-3), r"SGD: weight_decay must be a finite number ≥ 0"),
        (lambda p: Adam(p, lr=0.1, betas=(0.9,)), r"Adam: betas must be a pair \(beta1, beta2\), got \(0.9,\)"),
        (lambda p: Adam(p, lr=0.1, betas=0.9), r"Adam: betas must be a pair"),
        (
            lambda p: Adam(p, lr=0.1, betas=(1.0, 0.999)),
            r"Adam: betas\[0\] must be a finite number in \[0, 1\), got 1.0",
        ),
        (
            lambda p: AdamW(p, lr=0.1, betas=(0.9, 1.5)),
            r"AdamW: betas\[1\] must be a finite number in \[0, 1\), got 1.5",
        ),
        (lambda p: Adam(p, lr=0.1, eps=0.0), r"Adam: eps must be a finite number > 0"),
        (lambda p: Adagrad(p, lr=0.1, eps=-1.0), r"Adagrad: eps must be a finite number > 0"),
        (lambda p: RMSprop(p, lr=0.1, alpha=1.0), r"RMSprop: alpha must be a finite number in \(0, 1\)"),
        (lambda p: SGD({}, lr=0.1), r"SGD: params must be a non-empty dict of arrays"),
        (lambda p: SGD([np.zeros(2)], lr=0.1), r"SGD: params must be a non-empty dict of arrays"),
    ],
)
def test_optimizer_validation(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make(_params())


# -- gradient clipping ---------------------------------------------------------------


def _torch_norm(grads, max_norm):
    ts = []
    for g in grads.values():
        t = torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
        t.grad = torch.tensor(g)
        ts.append(t)
    total = torch.nn.utils.clip_grad_norm_(ts, max_norm)
    return float(total), [t.grad.numpy() for t in ts]


def test_clip_grad_norm_scales_to_max_norm_like_torch():
    grads = _grads(1, scale=3.0)[0]
    original = copy.deepcopy(grads)
    want_total, want_clipped = _torch_norm(original, 1.0)
    total = clip_grad_norm(grads, 1.0)
    assert total == pytest.approx(want_total, rel=1e-12)
    assert total == pytest.approx(math.sqrt(sum((g**2).sum() for g in original.values())), rel=1e-12)
    new_norm = math.sqrt(sum((g**2).sum() for g in grads.values()))
    assert new_norm == pytest.approx(1.0, rel=1e-10)
    for (k, g), w in zip(grads.items(), want_clipped, strict=True):
        np.testing.assert_allclose(g, original[k] / total, rtol=1e-10, err_msg=k)  # direction kept
        np.testing.assert_allclose(g, w, rtol=1e-5, err_msg=k)  # torch uses a 1e-6 guard


def test_clip_grad_norm_leaves_small_gradients_alone():
    grads = _grads(1, scale=0.01)[0]
    original = copy.deepcopy(grads)
    want_total, _ = _torch_norm(original, 1.0)
    assert clip_grad_norm(grads, 10.0) == pytest.approx(want_total, rel=1e-12)
    for k in grads:
        np.testing.assert_array_equal(grads[k], original[k])
    # max_norm None: only measure
    big = _grads(1, scale=100.0)[0]
    snapshot = copy.deepcopy(big)
    assert clip_grad_norm(big, None) > 100
    for k in big:
        np.testing.assert_array_equal(big[k], snapshot[k])


def test_clip_grad_norm_over_named_keys_only():
    grads = _grads(1, scale=3.0)[0]
    grads["h0"] = np.full(3, 1e3)  # not a parameter: neither measured nor scaled
    original = copy.deepcopy(grads)
    total = clip_grad_norm(grads, 0.5, names=list(SHAPES))
    assert total == pytest.approx(math.sqrt(sum((original[k] ** 2).sum() for k in SHAPES)), rel=1e-12)
    np.testing.assert_array_equal(grads["h0"], original["h0"])
    assert math.sqrt(sum((grads[k] ** 2).sum() for k in SHAPES)) == pytest.approx(0.5, rel=1e-10)


def test_clip_grad_norm_float32_keeps_dtype():
    grads = {k: v.astype(np.float32) for k, v in _grads(1, scale=5.0)[0].items()}
    clip_grad_norm(grads, 1.0)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values())) == pytest.approx(
        1.0, rel=1e-6
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_grad_norm_names_the_non_finite_gradient(bad):
    grads = _grads(1)[0]
    grads["b"][2] = bad
    with pytest.raises(FloatingPointError, match=r"gradient of 'b' is not finite"):
        clip_grad_norm(grads, 1.0)
    with pytest.raises(FloatingPointError, match=r"'b'"):
        clip_grad_norm(grads, None)


@pytest.mark.parametrize("dtype, value", [(np.float32, 1e20), (np.float64, 1e200)])
def test_clip_grad_norm_overflowing_but_finite_gradients(dtype, value):
    # Exploding gradients are exactly when clipping is needed: every entry is finite, but the
    # sum of squares overflows. Either clip correctly or raise FloatingPointError -- never StopIteration
    # (which the first version did).
    grads = {"W": np.full(3, value, dtype=dtype), "b": np.ones(2, dtype=dtype)}
    try:
        clip_grad_norm(grads, 1.0)
    except FloatingPointError:
        return
    norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads.values()))
    assert norm == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize(
    "dtype, value", [(np.float32, 1e25), (np.float32, 1e-25), (np.float64, 1e200), (np.float64, 1e-200)]
)
def test_clip_grad_norm_value_when_the_squares_overflow_or_underflow(dtype, value):
    # The norm comes from one dot product per gradient unless Σ g² left the float range;
    # then from the rescaled sum. Both directions must give the true norm.
    grads = {"W": np.full((3, 4), value, dtype=dtype), "b": np.full(4, -value, dtype=dtype)}
    assert clip_grad_norm(grads, None) == pytest.approx(float(value) * 4.0, rel=1e-6)


@pytest.mark.parametrize("bad", [np.ones(3, dtype=np.int64), [1.0, 2.0]])
def test_clip_grad_norm_refuses_non_float_gradients(bad):
    with pytest.raises(
        TypeError, match=r"clip_grad_norm: gradient of 'W' must be a float array, got (dtype int64|list)"
    ):
        clip_grad_norm({"W": bad, "b": np.ones(2)}, 1.0)


def test_clip_grad_norm_mixed_dtypes_with_a_maximum_below_float32s_range():
    # The rescaled sum divides by the largest |g_i|; a float32 gradient must be divided in float64
    # there (1e-50 is 0 in float32, and 0 / 0 gave a NaN norm).
    grads = {"a": np.full(4, 1e-50), "b": np.zeros(3, np.float32)}
    assert clip_grad_norm(grads, None) == pytest.approx(2e-50, rel=1e-12)


def test_clip_grad_norm_zero_gradients():
    grads = {"W": np.zeros((2, 2)), "b": np.zeros(2)}
    assert clip_grad_norm(grads, 1.0) == 0.0
    assert all(not g.any() for g in grads.values())


def _torch_value(grads, clip_value):
    ts = []
    for g in grads.values():
        t = torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype, requires_grad=True)
        t.grad = torch.tensor(g)
        ts.append(t)
    torch.nn.utils.clip_grad_value_(ts, clip_value)
    return [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("clip_value", [0.5, 1.7, 100.0])
def test_clip_grad_value_clamps_each_entry_like_torch(dtype, clip_value):
    grads = {k: v.astype(dtype) for k, v in _grads(1, scale=2.0)[0].items()}
    original = copy.deepcopy(grads)
    ids = {k: id(v) for k, v in grads.items()}
    want = _torch_value(original, clip_value)
    peak = clip_grad_value(grads, clip_value)
    assert peak == max(float(np.abs(g).max()) for g in original.values())  # the ∞-norm before clipping
    assert {k: id(v) for k, v in grads.items()} == ids  # in place
    for (k, g), w in zip(grads.items(), want, strict=True):
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, w, err_msg=k)
        np.testing.assert_array_equal(g, np.clip(original[k], -clip_value, clip_value), err_msg=k)
    if clip_value == 100.0:  # nothing above the bound: nothing changes, and the result says so
        assert peak < clip_value
        for k in grads:
            np.testing.assert_array_equal(grads[k], original[k])
    else:
        assert peak > clip_value and any((np.abs(original[k]) > clip_value).any() for k in grads)


def test_clip_grad_value_is_min_char_rnns_clip():
    rng = np.random.default_rng(3)
    dWxh, dWhh, dWhy, dbh, dby = (10 * rng.standard_normal(s) for s in [(5, 4), (5, 5), (4, 5), (5, 1), (4, 1)])
    mine = {"V": dWxh.copy(), "W": dWhh.copy(), "U": dWhy.copy(), "b_h": dbh.copy(), "b_y": dby.copy()}
    for dparam in [dWxh, dWhh, dWhy, dbh, dby]:
        np.clip(dparam, -5, 5, out=dparam)  # min-char-rnn: mitigate exploding gradients
    clip_grad_value(mine, 5)
    for k, want in zip(mine, [dWxh, dWhh, dWhy, dbh, dby], strict=True):
        np.testing.assert_array_equal(mine[k], want, err_msg=k)


def test_clip_grad_value_over_named_keys_only():
    grads = _grads(1, scale=3.0)[0]
    grads["h0"] = np.full(3, 1e3)  # not a parameter: neither measured nor clamped
    peak = clip_grad_value(grads, 0.5, names=list(SHAPES))
    assert peak < 1e3
    np.testing.assert_array_equal(grads["h0"], np.full(3, 1e3))
    assert all(np.abs(grads[k]).max() <= 0.5 for k in SHAPES)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_grad_value_names_the_non_finite_gradient_and_changes_nothing(bad):
    # Clamping would turn ±Inf into ±c (and leave NaN): the failure must not pass silently.
    grads = _grads(1, scale=10.0)[0]
    grads["b"][2] = bad
    original = copy.deepcopy(grads)
    with pytest.raises(FloatingPointError, match=r"gradient of 'b' is not finite"):
        clip_grad_value(grads, 1.0)
    for k in grads:  # W, which comes first and holds entries above 1, was not clipped either
        np.testing.assert_array_equal(grads[k], original[k], err_msg=k)
    grads["b"][2] = 0.0
    grads["U"][0, 0] = bad
    with pytest.raises(FloatingPointError, match=r"'U'"):
        clip_grad_value(grads, 1.0, names=["W", "U"])
    clip_grad_value(original, 1.0, names=["W", "U"])  # the bad entry of b is not among the names


@pytest.mark.parametrize(
    "clip_value, error, pattern",
    [
        (0, ValueError, r"clip_grad_value: clip_value must be a finite number > 0, got 0"),
        (-5.0, ValueError, r"clip_grad_value: clip_value must be a finite number > 0, got -5.0"),
        (float("nan"), ValueError, r"clip_grad_value: clip_value must be a finite number > 0, got nan"),
        (float("inf"), ValueError, r"clip_grad_value: clip_value must be a finite number > 0, got inf"),
        (None, TypeError, r"clip_grad_value: clip_value must be a finite number > 0, got None"),
        (True, TypeError, r"clip_grad_value: clip_value must be a finite number > 0, got True"),
        ("5", TypeError, r"clip_grad_value: clip_value must be a finite number > 0, got '5'"),
    ],
)
def test_clip_grad_value_validates_clip_value(clip_value, error, pattern):
    grads = _grads(1)[0]
    original = copy.deepcopy(grads)
    with pytest.raises(error, match=pattern):
        clip_grad_value(grads, clip_value)
    for k in grads:
        np.testing.assert_array_equal(grads[k], original[k])


@pytest.mark.parametrize("bad", [np.ones(3, dtype=np.int64), [1.0, 2.0]])
def test_clip_grad_value_refuses_non_float_gradients(bad):
    with pytest.raises(
        TypeError, match=r"clip_grad_value: gradient of 'W' must be a float array, got (dtype int64|list)"
    ):
        clip_grad_value({"W": bad, "b": np.ones(2)}, 1.0)


def test_clip_grad_value_of_empty_and_zero_gradients():
    assert clip_grad_value({}, 1.0) == 0.0
    grads = {"W": np.zeros((2, 2)), "e": np.zeros(0), "b": np.full(2, -0.25)}
    assert clip_grad_value(grads, 1.0) == 0.25
    assert clip_grad_value(grads, 0.1) == 0.25
    np.testing.assert_array_equal(grads["b"], [-0.1, -0.1])


def test_clip_grad_value_is_public():
    import bptt.training.optim

    assert "clip_grad_value" in bptt.training.optim.__all__
    assert bptt.optim.clip_grad_value is bptt.training.optim.clip_grad_value is clip_grad_value


@pytest.mark.parametrize(("cls", "kw"), [(Adam, dict(lr=0.01, weight_decay=0.1)), (AdamW, dict(lr=0.01))])
def test_mixed_dtypes_update_like_separate_optimizers(cls, kw):
    # float32 and float64 parameters live in separate flat groups; each must update as if alone.
    mixed = {k: v.astype(np.float32) if k == "b" else v for k, v in _params().items()}
    alone64 = {k: v for k, v in _params().items() if k != "b"}
    alone32 = {"b": _params()["b"].astype(np.float32)}
    opts = cls(mixed, **kw), cls(alone64, **kw), cls(alone32, **kw)
    for g in _grads():
        opts[0].step(g)
        opts[1].step({k: g[k] for k in alone64})
        opts[2].step({"b": g["b"].astype(np.float32)})
    assert mixed["b"].dtype == np.float32
    for k in SHAPES:
        want = alone32[k] if k == "b" else alone64[k]
        np.testing.assert_array_equal(mixed[k], want, err_msg=k)
        np.testing.assert_array_equal(opts[0].state["m"][k], (opts[2] if k == "b" else opts[1]).state["m"][k])


def test_step_errors_name_the_parameter():
    params = _params()
    opt = Adam(params, lr=0.1)
    g = _grads(1)[0]
    with pytest.raises(ValueError, match=r"Adam.step: grads has no entry for parameter 'U'"):
        opt.step({k: v for k, v in g.items() if k != "U"})
    with pytest.raises(ValueError, match=r"Adam.step: grads\['W'\] must have shape \(4, 3\), got \(3, 4\)"):
        opt.step(dict(g, W=g["W"].T))
    params["W"] = params["W"].copy()  # rebinding instead of updating in place
    with pytest.raises(ValueError, match=r"Adam.step: params\['W'\] was replaced by another array"):
        opt.step(g)
    with pytest.raises(TypeError, match=r"SGD: params\['W'\] must be a writeable float array, got ndarray"):
        SGD({"W": np.zeros(3, int)}, lr=0.1)
    assert opt.steps == 0  # refused steps change nothing
