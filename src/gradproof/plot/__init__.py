"""Plots of a gradient check (needs matplotlib: ``pip install 'gradproof[plot]'``).

Each plotting function takes a result and returns a :class:`matplotlib.figure.Figure`;
``path=`` also saves it (``.png`` or ``.svg``, by the suffix). No pyplot state
is touched, so the functions are safe in scripts, tests and notebooks.

- :func:`blocks`: the relative difference per block, on a log scale, with the
  Gradient Checking notebook's rule of thumb drawn (1e-7 great, 1e-5 look closer,
  1e-3 worry).
- :func:`scatter`: analytic against numerical, one panel per block; a correct
  block lies on the diagonal, a ×2 bug on a line of slope 2.
- :func:`sweep`: the difference against the step ε (the V curve).
- :func:`taylor`: the Taylor residual against h, with slopes 1 and 2 drawn.
- :func:`save` writes a figure as PNG or SVG; :func:`to_svg` returns it as SVG
  text, for ``IPython.display.SVG`` in a notebook.

>>> import numpy as np, gradproof, gradproof.plot
>>> report = gradproof.check(lambda w: float(np.sum(w ** 3)), np.ones(3), lambda w: 6 * w ** 2)
>>> fig = gradproof.plot.blocks(report)
>>> fig.axes[0].get_yscale()
'log'
"""

from __future__ import annotations

from gradproof._extras import require

require("plot")  # ImportError with the install command where matplotlib is missing

from gradproof.plot._figures import blocks, save, scatter, sweep, taylor, to_svg

__all__ = ["blocks", "save", "scatter", "sweep", "taylor", "to_svg"]
