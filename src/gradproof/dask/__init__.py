"""gradproof on a Dask cluster: a full check that outgrows one machine.

Installed with ``pip install 'gradproof[dask]'``; ``import gradproof`` alone
never imports Dask. Two ways in, with the same result:

- :func:`check`: ``gradproof.dask.check(loss, params, grad, scheduler="tcp://host:8786")``
  (or ``client=``), any other option as for :func:`gradproof.check`;
- ``gradproof.check(..., executor=client.get_executor())``, with a client from
  :func:`connect` (or your own), or ``gradproof check FILE --scheduler
  tcp://host:8786`` on the command line.

Either way, chunks of coordinates become Dask tasks sized to the loss's cost,
the parameters go to each worker once, and the report is the one a local run
gives, bit for bit. See ``docs/dask.md`` for clusters and the cost model.

>>> import numpy as np, distributed, gradproof
>>> web = {"dashboard_address": "127.0.0.1:0"}  # its status page: any free port, loopback
>>> with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None,
...                               scheduler_kwargs=web) as cluster:
...     with distributed.Client(cluster) as client:
...         report = gradproof.check(lambda p: np.sum(np.sin(p)), np.zeros(3),
...                                  np.ones(3), executor=client.get_executor())
>>> report.status
'pass'
"""

from __future__ import annotations

from gradproof._extras import require

require("dask")  # ImportError with the install command where distributed is missing

from gradproof.dask._check import check, connect
from gradproof.dask._executor import pieces

__all__ = ["check", "connect", "pieces"]
