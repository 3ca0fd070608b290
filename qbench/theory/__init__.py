"""The theory suite: the STE paper's two-linear-layer Gaussian model and the REC paper's recurrence toy.

Modules, in import order (each imports only those above it, and qbench's lower layers):

* :mod:`~qbench.theory.quadrature`: E g for any elementwise estimator μ' by Gaussian quadrature;
* :mod:`~qbench.theory.gaussian`: the model (spec §8): closed forms, Monte Carlo, coarse gradient descent, the table;
* :mod:`~qbench.theory.recurrence`: the recurrence toy (spec §6): projected coarse gradient descent on that model;
* :mod:`~qbench.theory.suite`: ``kind: theory`` suites as run records (``qbench run``).

Figures are drawn by :mod:`qbench.report.plots` from the records.
"""

__all__: list[str] = []
