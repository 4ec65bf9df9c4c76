"""`gradproof.dask.check`: :func:`gradproof.check` with the evaluations on a Dask cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import distributed

from gradproof._engine.check import check as _local_check
from gradproof._engine.validate import validate_passed_on
from gradproof._errors import invalid
from gradproof._report import Report

CONNECT_SECONDS = 10  # how long to wait for a scheduler to answer
NOT_HERE = ("workers", "executor")  # options that the cluster decides


def check(
    loss: Callable[[Any], Any],
    params: Any,
    grad: Any,
    *,
    scheduler: str | None = None,
    client: distributed.Client | None = None,
    **options: Any,
) -> Report:
    """Check ``grad`` like :func:`gradproof.check`, with the loss evaluated on a Dask cluster.

    Chunks of coordinates become Dask tasks, sized so that Dask's overhead stays
    under 2% of the work (see :mod:`gradproof.dask._executor`); the parameters
    and the pickled loss go to each worker once. The report is the one a local
    run gives, bit for bit (only its timing differs). ``mode="probe"`` runs
    locally: its evaluations depend on each other.

    Args:
        loss, params, grad: as for :func:`gradproof.check`; the loss must be
            picklable (closures go by cloudpickle) and every module it imports
            must be installed on the workers, as must gradproof.
        scheduler: the address of a running scheduler, e.g.
            ``"tcp://10.0.0.5:8786"``: gradproof connects, checks and disconnects.
        client: a connected ``distributed.Client`` to use instead; it stays open.
            With neither, the current default client (the last one made).
        **options: :func:`gradproof.check`'s keyword options (``eps``, ``tol``,
            ``mode``, ``budget``, ``progress`` ...), except ``workers`` and
            ``executor``, which the cluster decides.

    Returns:
        A frozen :class:`gradproof.Report`.

    Raises:
        InvalidArgument: misuse, an unpicklable loss (before any task is sent),
            or no scheduler at ``scheduler``.
        Exception: whatever the loss raised on a worker, with the worker's traceback.

    >>> import numpy as np, distributed, gradproof.dask
    >>> web = {"dashboard_address": "127.0.0.1:0"}  # its status page: any free port, loopback
    >>> with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None,
    ...                               scheduler_kwargs=web) as cluster:
    ...     with distributed.Client(cluster) as client:
    ...         report = gradproof.dask.check(lambda p: np.sum(p ** 3), np.ones(4),
    ...                                       lambda p: 3 * p ** 2, client=client)
    >>> report.passed, report.coverage
    (True, 'every coordinate: 4 of 4')
    """
    _validate(scheduler, client, options)
    if scheduler is None:
        return _local_check(
            loss, params, grad, executor=(client or _default_client()).get_executor(), **options
        )
    with connect(scheduler) as connected:
        return _local_check(loss, params, grad, executor=connected.get_executor(), **options)


def connect(address: str) -> distributed.Client:
    """Connect to the running Dask scheduler at ``address``, or say how to start one.

    The client is not made the default one, and waits :data:`CONNECT_SECONDS`
    for an answer. Use it as a context manager to disconnect again.

    Args:
        address: the address the scheduler prints, e.g. ``"tcp://10.0.0.5:8786"``.

    Returns:
        A connected ``distributed.Client``.

    Raises:
        InvalidArgument: no scheduler answered at ``address``.

    >>> import numpy as np, distributed, gradproof, gradproof.dask
    >>> web = {"dashboard_address": "127.0.0.1:0"}  # its status page: any free port, loopback
    >>> with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None,
    ...                               scheduler_kwargs=web) as cluster:
    ...     with gradproof.dask.connect(cluster.scheduler_address) as client:
    ...         report = gradproof.check(lambda p: np.sum(p ** 2), np.ones(3), 2 * np.ones(3),
    ...                                  executor=client.get_executor())
    >>> report.status
    'pass'
    """
    try:
        return distributed.Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise invalid(
            "scheduler",
            address,
            f"no Dask scheduler answered within {CONNECT_SECONDS} s ({type(error).__name__})",
            "start one (`dask scheduler`, then `dask worker ADDRESS` on each machine) and "
            "pass the address it prints",
        ) from error


def _validate(scheduler: Any, client: Any, options: dict[str, Any]) -> None:
    for name in NOT_HERE:
        if name in options:
            raise invalid(
                name,
                options[name],
                "is decided by the Dask cluster in gradproof.dask.check",
                f"leave out {name}=, or call gradproof.check(..., {name}=...) instead",
            )
    validate_passed_on(check, options, to=_local_check, own=set(NOT_HERE))
    if scheduler is not None and client is not None:
        raise invalid(
            "scheduler",
            scheduler,
            "cannot be combined with `client` (the client is already connected to one)",
            "pass either scheduler='tcp://host:8786' or client=...",
        )
    if scheduler is not None and (not isinstance(scheduler, str) or "://" not in scheduler):
        raise invalid(
            "scheduler",
            scheduler,
            "must be a scheduler's address with its protocol",
            "pass the address a running scheduler prints, e.g. scheduler='tcp://10.0.0.5:8786'",
        )
    if client is not None and not isinstance(client, distributed.Client):
        raise invalid(
            "client",
            client,
            f"is a {type(client).__name__}, not a distributed.Client",
            "pass distributed.Client(address), or scheduler='tcp://host:8786'",
        )


def _default_client() -> distributed.Client:
    try:
        return distributed.default_client()
    except ValueError as error:
        raise invalid(
            "client",
            None,
            "no Dask client is connected in this process",
            "pass scheduler='tcp://host:8786' (a running scheduler's address) or "
            "client=distributed.Client(...)",
        ) from error
