"""Looking inside BPTT: Jacobian products, per-step terms, sensitivity, dependence, gradient checks.

Every diagnostic starts from :func:`~bptt.diagnostics.problem.float64_problem` (validate in
the model's dtype, analyse a float64 copy) and uses the engine through
:class:`~bptt.engine.stack.Stack`'s public passes. ``explain``, ``plots`` and ``report`` turn
them into JSON, PNGs and an HTML page; ``health`` holds the cheap checks training logs.
"""
