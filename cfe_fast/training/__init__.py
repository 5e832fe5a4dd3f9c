"""Training: the problem a fit solves, its state, the trainers, the aggregator fits, the outer loop.

:mod:`.state` (the fitted parameters and what is derived from them),
:mod:`.problem` (data, weights and backend kernels: the steps a trainer
takes), :mod:`.aggregator` (every way the aggregator is fitted),
:mod:`.exact_steps` (the majorised block steps of the exact trainer),
:mod:`.trainers` (als, exact, joint) and :mod:`.loop` (iterations, stop
test, monitors, checkpoints).
"""
