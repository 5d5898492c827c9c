"""One-to-many generation: each output is fed back as the next input.

The exam's RNN-B generates a description from a single word embedding ``x_1``:
after computing ``p_1`` the next input ``x_2`` comes from ``p_1``. Three ways
to turn ``p_t`` into ``x_{t+1}`` (the ``feedback`` argument)::

    "probs"   x_{t+1} = p_t                     (the probability vector itself)
    "argmax"  x_{t+1} = onehot(argmax p_t)      (greedy: the most likely word)
    "sample"  x_{t+1} = onehot(k), k ~ p_t      (a word drawn from p_t)

With ``embedding=E`` of shape ``(O, D)`` the chosen word's embedding
``E[k]`` (or ``Eᵀ p_t`` for ``"probs"``) is fed back instead of the one-hot
vector, as when words enter the network as embeddings. For a network that
reads token ids, ``x_{t+1}`` is the id ``k`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _checks
from ..engine.network import RNN, require_network

__all__ = ["FEEDBACK_MODES", "Generation", "generate"]

FEEDBACK_MODES = ("probs", "argmax", "sample")


@dataclass(frozen=True)
class Generation:
    """The inputs, outputs and chosen words of a generated sequence.

    Attributes
    ----------
    inputs : ndarray, (n, B, D) float or (n, B) int
        ``x_1 .. x_n`` as fed to the network (``x_1`` is the given start).
    outputs : ndarray, (n, B, O)
        ``p_1 .. p_n``.
    choices : ndarray, (n, B) int or None
        The word chosen from each ``p_t`` (``None`` for ``feedback="probs"``).
    state : dict of ndarray
        State after the last step.
    """

    inputs: np.ndarray
    outputs: np.ndarray
    choices: np.ndarray | None
    state: dict[str, np.ndarray]


def generate(
    model: RNN,
    x1: object,
    steps: int,
    *,
    feedback: str = "probs",
    embedding: object = None,
    h0: object = None,
    temperature: float = 1.0,
    seed: int | np.random.Generator | None = None,
) -> Generation:
    """Generate ``steps`` outputs from one input, feeding each output back as the next input.

    Parameters
    ----------
    model : RNN
        A network whose outputs can become inputs: ``output_size == input_size``,
        or an ``embedding`` of shape ``(output_size, input_size)``.
    x1 : array, (B, D) or (D,) float, or (B,) int token ids
        The first input (a single vector is a batch of one).
    steps : int
        Number of outputs ``p_1 .. p_steps``.
    feedback : str
        ``"probs"``, ``"argmax"`` or ``"sample"`` (see the module docstring).
    embedding : array (O, D), optional
        Embedding of the output words, fed back instead of one-hot vectors.
    h0 : initial state, optional
    temperature : float
        For ``"sample"``: draw from ``p_t^(1/temperature)`` renormalised.
    seed : int or Generator
        Randomness for ``"sample"``.

    Returns
    -------
    Generation
    """
    where = "generate"
    require_network(model, where)
    model.refuse_bidirectional(where)
    steps = _checks.positive_int(steps, "steps", where)
    if feedback not in FEEDBACK_MODES:
        raise ValueError(f"{where}: feedback must be one of {list(FEEDBACK_MODES)}, got {feedback!r}")
    temperature = _checks.real(temperature, "temperature", where)
    D, O = model.input_size, model.output_size
    x = _checks.as_array(x1, "x1", where, model.dtype)
    if x.dtype.kind == "f" and x.ndim == 1:
        x = x[None]
    x = _checks.step_input(x, D, model.dtype, where, name="x1")
    tokens = x.dtype.kind in "iu"
    E = None
    if embedding is not None:
        if tokens:
            raise ValueError(f"{where}: embedding is for networks with vector inputs; this one was given token ids")
        E = _checks.float_array(_checks.as_array(embedding, "embedding", where), "embedding", model.dtype, where)
        if E.shape != (O, D):
            raise ValueError(f"{where}: embedding must have shape ({O}, {D}), got {E.shape}")
    elif O != D:
        raise ValueError(
            f"{where}: outputs become inputs, so output_size must equal input_size ({O} != {D}); "
            f"pass embedding of shape ({O}, {D})"
        )
    if tokens and feedback == "probs":
        raise ValueError(
            f"{where}: feedback='probs' needs vector inputs; a token-id network needs 'argmax' or 'sample'"
        )
    if feedback == "sample" and model.output.name != "softmax":
        raise ValueError(
            f"{where}: feedback='sample' draws from p_t, so output must be 'softmax', got {model.output.name!r}"
        )
    rng = _checks.generator(seed, where)

    B = x.shape[0]
    model.check_params(where)
    state = model.layer_states(h0, B, where)
    inputs = np.empty((steps, B) if tokens else (steps, B, D), x.dtype)
    outputs = np.empty((steps, B, O), model.dtype)
    choices = None if feedback == "probs" else np.empty((steps, B), np.intp)
    for t in range(steps):
        inputs[t] = x
        logits, state = model.run_step(x, state)  # checked once above; every later x is built here
        p = outputs[t] = model.output.f(logits)
        if feedback == "probs":
            x = p if E is None else p @ E
            continue
        if feedback == "argmax":
            k = p.argmax(axis=1)
        else:
            k = _draw(p, temperature, rng)
        choices[t] = k
        if tokens:
            x = k
        elif E is not None:
            x = E[k]
        else:
            x = np.zeros((B, D), model.dtype)
            x[np.arange(B), k] = 1.0
    return Generation(inputs=inputs, outputs=outputs, choices=choices, state=model.name_states(state))


def _draw(p: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """One index per row of ``p`` (B, O), drawn from ``p^(1/temperature)`` renormalised."""
    logp = np.log(np.maximum(p, np.finfo(p.dtype).tiny)) / temperature
    q = np.exp(logp - logp.max(axis=1, keepdims=True))
    cdf = np.cumsum(q / q.sum(axis=1, keepdims=True), axis=1)
    u = rng.random((p.shape[0], 1))
    return np.minimum((cdf < u).sum(axis=1), p.shape[1] - 1)
