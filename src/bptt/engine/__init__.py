"""The engine: cells, inputs, outputs and losses, the stack of layers, the named networks.

=================  =============================================================
module             what it holds
=================  =============================================================
``layers/``        one file per cell: equations, reference step, fast kernels
``inputs``         input projections ``V x_t`` (a product, or a gather for ids)
``readout``        the output layer ``z2_t = U h_t [+ U_x x_t] + b_y``
``activations``    ``f_h`` and its derivative
``losses``         ``f_y`` paired with its loss, and ``∂J/∂z2``
``stack``          :class:`~bptt.engine.stack.Stack`: layers + parameters, the passes on
                   validated arguments (the seam the rest of bptt uses)
``network``        :class:`~bptt.RNN`: the user-facing API (checks, losses, traces, configs)
``models``         :class:`~bptt.Elman`, :class:`~bptt.LSTM`, :class:`~bptt.GRU`
``stepper``        :class:`~bptt.Stepper`: one token at a time, for generation
=================  =============================================================
"""
