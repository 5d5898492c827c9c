"""The networks of the course, by name: :class:`Elman` (lecture, RNN-A, RNN-B), :class:`LSTM`, :class:`GRU`.

Each is an :class:`~bptt.network.RNN` whose layers are all of one kind; use
:class:`~bptt.network.RNN` with a list of :class:`~bptt.network.LayerSpec` to mix kinds.

=============  ================================================================  ==========================
network        construction                                                      parameters
=============  ================================================================  ==========================
lecture Elman  ``Elman(D, H, O)``                                                ``V, W, b_h, U, b_y``
RNN-A          ``Elman(D, H, O, bias=False, notation="mit")``                    ``W_ss, W_sx, W_o``
RNN-B          ``Elman(D, H, O, bias=False, notation="concat",                   ``W_ssx (H, H+D)``,
               output_reads_input=True)``                                        ``W_ox (O, H+D)``
LSTM           ``LSTM(D, H, O)``                                                 ``V, W, b, U, b_y``
GRU            ``GRU(D, H, O)``                                                  ``V, W, b, b_hn, U, b_y``
=============  ================================================================  ==========================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _checks
from .network import MODELS, RNN, LayerSpec

__all__ = ["GRU", "LSTM", "MODELS", "Elman"]


class _Named(RNN):
    """A network of one cell kind, built from a uniform stack by :meth:`build`."""

    spec_options: tuple[str, ...] = ()  # LayerSpec fields the constructor takes as keywords (build reads them back)

    @classmethod
    def build(cls, input_size, layers, output_size, settings, *, seed=None, params=None, kernels="fast") -> RNN:
        """The factory :meth:`RNN.from_config` calls for a stack of ``cls``'s layers, all of one kind, size and
        options: the stack's shape and each of :attr:`spec_options` become the constructor's keywords."""
        spec = layers[0]
        return cls(
            input_size,
            spec.hidden_size,
            output_size,
            num_layers=len(layers),
            bidirectional=spec.bidirectional,
            seed=seed,
            kernels=kernels,
            _params=params,
            **{name: getattr(spec, name) for name in cls.spec_options},
            **settings,
        )


class Elman(_Named):
    """Elman network of the lecture: ``h_t = f_h(V x_t + W h_{t-1} + b_h)``, ``ŷ_t = f_y(U h_t + b_y)``.

    ======  =========  ===================================================
    symbol  shape      meaning
    ======  =========  ===================================================
    x_t     (B, D)     input at step t (or token ids, (B,))
    h_t     (B, H)     hidden state; ``h0`` is the initial state
    ŷ_t     (B, O)     output ``f_y(U h_t + b_y)``
    V       (H, D)     input → hidden           (mit: ``W_sx``)
    W       (H, H)     hidden → hidden          (mit: ``W_ss``)
    b_h     (H,)       hidden bias              (mit, concat: ``b_s``)
    U       (O, H)     hidden → output          (mit, concat: ``W_o``)
    b_y     (O,)       output bias              (mit, concat: ``b_o``)
    ======  =========  ===================================================

    With ``notation="concat"``, ``W_ssx = [W_ss | W_sx]`` is one ``(H, H + D)`` array,
    and with ``output_reads_input=True`` the output reads ``[h_t; x_t]`` through
    ``W_ox`` ``(O, H + D)`` (RNN-B); in the other notations the skip weight is
    ``U_x`` / ``W_ox`` of shape ``(O, D)``.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
        D, H and O.
    activation : str
        ``f_h``: ``"tanh"``, ``"relu"``, ``"sigmoid"`` or ``"identity"``.
    output : str
        ``f_y``: ``"softmax"``, ``"sigmoid"`` or ``"identity"`` (with their losses).
    bias : bool
        Whether the layers and the output have biases (``b_h``, ``b_y``).
    output_bias : bool or None
        Whether the output has ``b_y``, when it differs from the layers (``None``: as ``bias``).
    notation : str
        ``"lecture"``, ``"mit"`` or ``"concat"``.
    output_reads_input : bool
        Whether ``x_t`` also feeds the output: ``ŷ_t = f_y(U h_t + U_x x_t + b_y)`` (RNN-B).
    num_layers : int
        Stack this many Elman layers of size H.
    bidirectional : bool
        Give every layer a reverse twin reading each sequence backwards (parameters ``V_reverse``,
        ``W_l1_reverse``, …; states ``h0_reverse``, …); each layer outputs ``[h_t; h_t^reverse]`` (2H),
        and the readout ``U`` is ``(O, 2H)``.
    embedding_size : int or None
        Optional input embedding ``e_t = E x_t``, ``E`` of shape ``(embedding_size, D)``.
    dtype : str
        ``"float32"`` or ``"float64"``.
    seed : int, numpy.random.Generator or None
    dropout : float
        ``p`` of dropout on every layer's output but the last (as ``torch.nn.LSTM``), in training
        passes that get a ``dropout_rng`` only.
    recurrent_dropout : float
        ``p`` of dropout on ``h_{t-1}`` where it enters ``W h_{t-1}``: one mask per sequence, the same
        at every step (Gal & Ghahramani; Keras); training passes only.
    kernels : str
        ``"fast"`` or ``"reference"`` (see :class:`~bptt.network.RNN`).

    Examples
    --------
    >>> m = Elman(input_size=3, hidden_size=4, output_size=3, seed=0)
    >>> sorted(m.params)
    ['U', 'V', 'W', 'b_h', 'b_y']
    """

    _name = "Elman"
    cell = "elman"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        activation: str = "tanh",
        output: str = "softmax",
        bias: bool = True,
        output_bias: bool | None = None,
        notation: str = "lecture",
        output_reads_input: bool = False,
        num_layers: int = 1,
        bidirectional: bool = False,
        embedding_size: int | None = None,
        dtype: str | np.dtype = "float64",
        seed: int | np.random.Generator | None = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        kernels: str = "fast",
        _params: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        layers = _stack("elman", hidden_size, num_layers, self._name, bidirectional, activation=activation)
        super().__init__(
            input_size,
            layers,
            output_size,
            output=output,
            bias=bias,
            output_bias=output_bias,
            notation=notation,
            output_reads_input=output_reads_input,
            embedding_size=embedding_size,
            dtype=dtype,
            seed=seed,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            kernels=kernels,
            _params=_params,
        )

    spec_options = ("activation",)


class _Gated(_Named):
    """A network of gated layers of one kind (LSTM or GRU); parameters as :class:`Elman`
    without ``activation`` (``notation`` names only the output layer's parameters)."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        output: str = "softmax",
        bias: bool = True,
        output_bias: bool | None = None,
        notation: str = "lecture",
        output_reads_input: bool = False,
        num_layers: int = 1,
        bidirectional: bool = False,
        embedding_size: int | None = None,
        dtype: str | np.dtype = "float64",
        seed: int | np.random.Generator | None = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        kernels: str = "fast",
        _params: Mapping[str, np.ndarray] | None = None,
        _options: Mapping[str, Any] | None = None,
    ) -> None:
        layers = _stack(self.cell, hidden_size, num_layers, self._name, bidirectional, **(_options or {}))
        super().__init__(
            input_size,
            layers,
            output_size,
            output=output,
            bias=bias,
            output_bias=output_bias,
            notation=notation,
            output_reads_input=output_reads_input,
            embedding_size=embedding_size,
            dtype=dtype,
            seed=seed,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            kernels=kernels,
            _params=_params,
        )


class LSTM(_Gated):
    """LSTM network: ``ŷ_t = f_y(U h_t + b_y)`` on LSTM layers (equations in :mod:`bptt.engine.layers.lstm`).

    ======  =========  ===================================================
    symbol  shape      meaning
    ======  =========  ===================================================
    V       (4H, D)    input → gates [i; f; g; o]
    W       (4H, H)    hidden → gates
    b       (4H,)      gate bias (forget block initialised to 1)
    U       (O, H)     hidden → output
    b_y     (O,)       output bias
    h0, c0  (B, H)     initial hidden and cell state
    ======  =========  ===================================================

    Parameters as :class:`Elman`, without ``activation`` and ``notation``.
    """

    _name = "LSTM"
    cell = "lstm"


class GRU(_Gated):
    """GRU network: ``ŷ_t = f_y(U h_t + b_y)`` on GRU layers (equations in :mod:`bptt.engine.layers.gru`).

    ======  =========  ===================================================
    symbol  shape      meaning
    ======  =========  ===================================================
    V       (3H, D)    input → gates [r; z; n]
    W       (3H, H)    hidden → gates
    b       (3H,)      input-side gate bias
    b_hn    (H,)       bias of W_n h inside the reset product
    U       (O, H)     hidden → output
    b_y     (O,)       output bias
    h0      (B, H)     initial state
    ======  =========  ===================================================

    Parameters as :class:`Elman`, without ``activation`` and ``notation``.
    """

    _name = "GRU"
    cell = "gru"

    spec_options = ("reset_after",)

    def __init__(self, input_size: int, hidden_size: int, output_size: int, *, reset_after: bool = True, **kwargs):
        super().__init__(input_size, hidden_size, output_size, _options={"reset_after": reset_after}, **kwargs)


# The one table of named networks (bptt.engine.network.MODELS, which RNN.from_config reads).
MODELS.update({cls.cell: cls for cls in (Elman, LSTM, GRU)})
NAMED = MODELS  # its name before the sub-packages


def _stack(kind: str, hidden_size: int, num_layers: int, where: str, bidirectional: bool, **options) -> list[LayerSpec]:
    hidden_size = _checks.positive_int(hidden_size, "hidden_size", where)
    num_layers = _checks.positive_int(num_layers, "num_layers", where)
    return [LayerSpec(kind, hidden_size, bidirectional=bidirectional, **options) for _ in range(num_layers)]
