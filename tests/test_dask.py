"""Gradient checks on a Dask cluster: the same report as a local run, and nothing lost.

Every test runs against a ``distributed.LocalCluster`` on this machine, bound to
127.0.0.1. The losses are built inside functions (closures), so that cloudpickle
sends them to the workers by value: the workers cannot import this test module.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import threading
import time
import traceback
from concurrent.futures import Executor

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="needs gradproof[dask]")

import gradproof  # noqa: E402
import gradproof.dask  # noqa: E402
from conftest import LOCAL_CLUSTER  # noqa: E402
from gradproof._engine.evaluate import Evaluator  # noqa: E402
from gradproof._engine.parallel import PieceExecutor, dumps  # noqa: E402
from gradproof._engine.tree import flatten  # noqa: E402
from gradproof.dask import _check as dask_check  # noqa: E402
from gradproof.dask import _executor  # noqa: E402
from gradproof.examples import fraud  # noqa: E402

CLUSTER = LOCAL_CLUSTER


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(**CLUSTER) as running:
        yield running


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster) as connected:
        yield connected


# ------------------------------------------------------------------ models


def mlp(sizes=(12, 24, 1), *, plant=None, sleep=0.0, raise_in_worker=False, seed=0):
    """``(loss, params, grad)``: a tanh MLP with mean squared error and exact backprop.

    ``plant=(block, index)`` doubles one element of the gradient; ``sleep`` makes
    each evaluation that much slower; ``raise_in_worker`` makes the loss raise
    ValueError in any process but this one.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(16, sizes[0]))
    y = rng.normal(size=(16, sizes[-1]))
    params = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes), start=1):
        params[f"W{i}"] = rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)
        params[f"b{i}"] = 0.1 * rng.normal(size=n_out)
    layers = len(sizes) - 1
    parent = os.getpid()

    def loss(p):
        if raise_in_worker and os.getpid() != parent:
            raise ValueError("the loss refuses to run on a worker")
        if sleep:
            time.sleep(sleep)
        a = X
        for i in range(1, layers + 1):
            z = a @ p[f"W{i}"].T + p[f"b{i}"]
            a = np.tanh(z) if i < layers else z
        return float(np.mean((a - y) ** 2))

    def grad(p):
        acts = [X]
        for i in range(1, layers + 1):
            z = acts[-1] @ p[f"W{i}"].T + p[f"b{i}"]
            acts.append(np.tanh(z) if i < layers else z)
        delta = 2 * (acts[-1] - y) / y.size
        out = {}
        for i in range(layers, 0, -1):
            out[f"W{i}"] = delta.T @ acts[i - 1]
            out[f"b{i}"] = delta.sum(axis=0)
            if i > 1:
                delta = (delta @ p[f"W{i}"]) * (1 - acts[i - 1] ** 2)
        if plant is not None:
            out[plant[0]][plant[1]] *= 2.0
        return out

    return loss, params, grad


def assert_bit_identical(got, want):
    """The same report bit for bit, but for its wall-clock time."""
    assert float(got.difference).hex() == float(want.difference).hex()
    assert got.status == want.status
    assert got.suspects == want.suspects
    assert got.evaluations == want.evaluations
    assert list(got.blocks) == list(want.blocks)
    for name, block in want.blocks.items():
        other = got.blocks[name]
        for number in ("difference", "max_abs_error"):
            assert float(getattr(other, number)).hex() == float(getattr(block, number)).hex()
        assert other.wrong_elements == block.wrong_elements
        assert other.worst_index == block.worst_index
        assert [(e.analytic, e.numerical) for e in other.worst] == [
            (e.analytic, e.numerical) for e in block.worst
        ]
    # and every other field: JSON writes floats with repr, which round-trips exactly
    assert _without_time(got) == _without_time(want)


def _without_time(report):
    out = report.to_dict()
    del out["seconds"]
    return json.dumps(out, sort_keys=True)


def transitions(client) -> int:
    """How many task transitions the scheduler has made so far."""
    return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)


def clients(client) -> int:
    """How many clients the scheduler knows."""
    return client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.clients))


def wait_until(condition, attempts: int = 100) -> bool:
    """Poll ``condition`` (every 50 ms, 100 times at most) until it holds."""
    for _ in range(attempts):
        if condition():
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------ the same report


def test_the_fraud_example_with_its_planted_bugs_gives_the_serial_report(client):
    loss, params, grads = fraud.problem(bugs=True)
    serial = gradproof.check(loss, params, grads)
    remote = gradproof.check(loss, params, grads, executor=client.get_executor())
    assert_bit_identical(remote, serial)
    assert not remote.passed
    assert set(remote.suspects) == {"W2", "b1"}


def test_a_batched_loss_gives_the_serial_report(client):
    X, Y, params = fraud.gradient_check_n_test_case()
    loss, _, grads = fraud.problem(bugs=True)
    batched = fraud.batched_loss(X, Y)
    serial = gradproof.check(batched, params, grads, batched=True)
    remote = gradproof.check(batched, params, grads, batched=True, executor=client.get_executor())
    assert_bit_identical(remote, serial)
    assert set(remote.suspects) == {"W2", "b1"}


def test_a_larger_mlp_is_cut_into_tasks_on_both_workers_and_gives_the_serial_report(client):
    # 1 ms per evaluation: 2 x 337 evaluations are worth several 50 ms tasks
    loss, params, grad = mlp((12, 24, 1), plant=("W1", (3, 5)), sleep=1e-3)
    serial = gradproof.check(loss, params, grad)
    with distributed.get_task_stream(client) as stream:
        remote = gradproof.dask.check(loss, params, grad, client=client)
    assert_bit_identical(remote, serial)
    assert remote.suspects == ("W1",)
    assert remote.blocks["W1"].wrong_elements == ((3, 5),)
    pieces = [t for t in stream.data if t["key"].startswith("_run_piece")]
    timings = [t for t in stream.data if t["key"].startswith("_time_base")]
    holds = [t for t in stream.data if t["key"].startswith("_hold")]
    assert len(holds) == 1  # the payload is sent once per check
    assert len(timings) == 1  # and the loss timed once
    assert 2 <= len(pieces) <= 2 * 2 * _executor.PIECES_PER_WORKER  # central pair + refinement
    assert len({t["worker"] for t in pieces}) == 2


def test_pieces_carry_only_their_coordinates_and_offsets(client):
    inner = client.get_executor()
    sent = []

    class Recording(Executor):
        _client = client

        def submit(self, fn, /, *args, **kwargs):
            sent.append((fn.__name__, args))
            return inner.submit(fn, *args, **kwargs)

    loss, params, grad = mlp((3, 4, 1))
    layout, theta = flatten(params)
    payload = dumps((loss, layout, theta, False), "loss", "test")
    executor = _executor.DaskExecutor(Recording(), payload)
    indices = np.arange(theta.size)
    offsets = np.outer(np.full(theta.size, 1e-6), [1.0, -1.0])
    assert isinstance(executor, PieceExecutor)
    got = executor.submit_piece(indices, offsets).result()
    want = Evaluator(loss, layout, theta).coordinates(indices, offsets)
    assert got.tobytes() == want.tobytes()
    assert [name for name, _ in sent] == ["_time_base", "_run_piece"]
    shipped, key, *rest = sent[1][1]
    assert isinstance(shipped, distributed.Future) and key == shipped.key
    assert rest[0] is indices and rest[1] is offsets  # no payload bytes in the task
    executor.shutdown()


def test_the_scheduler_address_and_the_default_client_give_the_serial_report(cluster, client):
    loss, params, grad = mlp((5, 7, 1))
    serial = gradproof.check(loss, params, grad)
    connected = clients(client)
    by_address = gradproof.dask.check(loss, params, grad, scheduler=cluster.scheduler_address)
    assert_bit_identical(by_address, serial)
    by_default = gradproof.dask.check(loss, params, grad)  # `client` is the default client
    assert_bit_identical(by_default, serial)
    # the client made for `scheduler=` was closed again (the scheduler hears of it shortly)
    assert wait_until(lambda: clients(client) == connected)


def test_progress_counts_every_evaluation_as_chunks_complete(client, capsys):
    loss, params, grad = mlp((5, 7, 1))
    report = gradproof.check(loss, params, grad, executor=client.get_executor(), progress=True)
    bar = capsys.readouterr().err
    # The last redraw counts every evaluation, and every chunk the workers sent back.
    last = re.split(r"[\r\n]", bar.strip())[-1]  # a terminal's redraws or a log's lines
    assert f"{report.evaluations} evaluations" in last
    done, total = (int(x) for x in re.search(r"(\d+)/(\d+) chunks", last).groups())
    assert done == total >= 1


# ------------------------------------------------------------------ nothing lost


@pytest.mark.parametrize("victims", ["the busy worker", "every worker"])
def test_workers_killed_mid_check_leave_a_complete_and_correct_report(victims):
    # A check of 4 ms evaluations, long enough to kill workers in the middle of it.
    # "every worker" also kills every holder of the payload (the pickled loss and
    # parameters), which Dask must then recompute rather than give up on.
    loss, params, grad = mlp((20, 12, 1), plant=("b1", (4,)), sleep=4e-3)
    serial = gradproof.check(loss, params, grad)
    killed: dict[str, object] = {}
    with distributed.LocalCluster(**CLUSTER) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)

        def kill_mid_check():
            for _ in range(6000):  # 60 s at most
                busy = client.run_on_scheduler(_processing_pieces)
                if busy:
                    key, address = busy[0]
                    doomed = [address] if victims == "the busy worker" else list(pids)
                    killed.update(key=key, pids=[pids[a] for a in doomed])
                    for pid in killed["pids"]:
                        os.kill(pid, signal.SIGKILL)
                    return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_mid_check, daemon=True)
        killer.start()
        remote = gradproof.check(loss, params, grad, executor=client.get_executor())
        killer.join()
        assert killed, "no piece was ever seen running"
        story = client.run_on_scheduler(_story, killed["key"])
        client.wait_for_workers(2)
        alive = set(client.run(os.getpid).values())
    assert not alive & set(killed["pids"])  # the worker processes did die ...
    assert story.count("processing") >= 2  # ... and the busy piece ran again
    assert_bit_identical(remote, serial)
    n = sum(v.size for v in params.values())
    assert remote.coverage == f"every coordinate: {n} of {n}"
    assert remote.blocks["b1"].wrong_elements == ((4,),)


def _processing_pieces(dask_scheduler):
    return [
        (ts.key, ts.processing_on.address)
        for ts in dask_scheduler.tasks.values()
        if ts.state == "processing" and str(ts.key).startswith("_run_piece")
    ]


def _story(key, dask_scheduler=None):
    return [entry[2] for entry in dask_scheduler.story(key)]


def holding_a_lock(tmp_path):
    lock = threading.Lock()
    loss_fn, params, grad = mlp((3, 4, 1))

    def loss(p):
        with lock:
            return loss_fn(p)

    return loss, params, grad, "lock", lambda: None


def writing_a_log(tmp_path):
    log = open(tmp_path / "log.txt", "w")  # closed by the test
    loss_fn, params, grad = mlp((3, 4, 1))

    def loss(p):
        value = loss_fn(p)
        log.write(f"{value}\n")
        return value

    return loss, params, grad, "file", log.close


@pytest.mark.parametrize("build", [holding_a_lock, writing_a_log])
def test_an_unpicklable_loss_is_refused_before_any_task_is_sent(client, tmp_path, build):
    loss, params, grad, cause, close = build(tmp_path)
    before = transitions(client)
    try:
        with pytest.raises(gradproof.InvalidArgument) as caught:
            gradproof.check(loss, params, grad, executor=client.get_executor())
    finally:
        close()
    message = str(caught.value)
    assert message.startswith("`loss`=<function ")  # the loss itself, not the whole payload
    assert "must be picklable" in message
    assert cause in message.lower()  # the cause, as pickling reported it
    assert "Fix: " in message and "module level" in message  # the fix
    assert transitions(client) == before  # the scheduler saw no task


def test_a_loss_raising_on_a_worker_surfaces_the_original_traceback(client):
    loss, params, grad = mlp((3, 4, 1), raise_in_worker=True)
    with pytest.raises(ValueError, match="the loss refuses to run on a worker") as caught:
        gradproof.check(loss, params, grad, executor=client.get_executor())
    assert type(caught.value) is ValueError
    text = "".join(traceback.format_exception(caught.value))
    assert "gradproof/dask/_executor.py" in text  # frames that ran on the worker ...
    # ... down to the loss's own frame. Its source line shows only where the worker can read
    # the file: cloudpickle sends a test's closure by value, and newer releases name its code
    # "<dynamic-code>", so the frame, not the line, is what is asserted.
    assert "in loss" in text


# ------------------------------------------------------------------ options and sizing


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"workers": 2}, "workers"),
        ({"executor": None}, "executor"),
        ({"scheduler": "tcp://127.0.0.1:1", "client": "x"}, "scheduler"),
        ({"client": "tcp://127.0.0.1:8786"}, "client"),
        ({"scheduler": "127.0.0.1:8786"}, "scheduler"),
        ({"scheduler": 8786}, "scheduler"),
    ],
)
def test_bad_options_name_the_argument_and_the_fix(options, argument):
    loss, params, grad = mlp((2, 2, 1))
    with pytest.raises(gradproof.InvalidArgument, match=f"^`{argument}`=") as caught:
        gradproof.dask.check(loss, params, grad, **options)
    assert "Fix: " in str(caught.value)


def test_no_scheduler_at_the_address_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(dask_check, "CONNECT_SECONDS", 1)
    loss, params, grad = mlp((2, 2, 1))
    with pytest.raises(gradproof.InvalidArgument, match="no Dask scheduler answered") as caught:
        gradproof.dask.check(loss, params, grad, scheduler="tcp://127.0.0.1:9")
    assert "`scheduler`='tcp://127.0.0.1:9'" in str(caught.value)
    assert "dask scheduler" in str(caught.value)


def test_connect_gives_a_client_that_is_not_the_default(cluster, client):
    with gradproof.dask.connect(cluster.scheduler_address) as connected:
        assert connected.status == "running"
        assert distributed.default_client() is not connected


def test_no_client_at_all_is_a_clear_error(monkeypatch):
    def no_client():
        raise ValueError("No clients found")

    monkeypatch.setattr(distributed, "default_client", no_client)
    loss, params, grad = mlp((2, 2, 1))
    with pytest.raises(gradproof.InvalidArgument, match="no Dask client is connected"):
        gradproof.dask.check(loss, params, grad)


@pytest.mark.parametrize(
    ("n", "k", "seconds", "threads"),
    [
        (92_000, 2, 3e-4, 2),
        (47, 2, 2e-5, 2),
        (10_000, 2, 1e-3, 400),
        (1, 4, 10.0, 8),
        (5_000, 2, 1e-6, 64),
        (300, 2, 5e-3, 3),
    ],
)
def test_tasks_are_long_enough_for_small_overhead_and_enough_to_balance(n, k, seconds, threads):
    count = gradproof.dask.pieces(n, k, seconds, threads)
    assert 1 <= count <= min(n, threads * _executor.PIECES_PER_WORKER)
    if count > 1:  # every task holds at least 50 ms of evaluations: overhead <= 2%
        shortest = (n // count) * k * seconds
        assert _executor.TASK_OVERHEAD <= _executor.OVERHEAD_SHARE * shortest
