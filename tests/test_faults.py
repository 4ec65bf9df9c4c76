"""Faults end a check cleanly: a worker that dies, segfaults or hangs, a loss past its
``timeout=`` or its budget, Ctrl-C, a lost Dask worker. Each ends with a gradproof
error or the user's own exception, naming the point; no child process outlives it.

Every check here runs under :func:`bounded`: one that hangs fails its test instead of
hanging the suite. The losses are defined at module level so that workers can
unpickle them; they misbehave only in a worker process (a crash in this process
would end the test run) unless the test says otherwise.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import resource_tracker

import numpy as np
import pytest

import gradproof
from conftest import LOCAL_CLUSTER

WorkerError = gradproof.WorkerError

POSIX = pytest.mark.skipif(sys.platform == "win32", reason="signals and sessions are POSIX")
BOUND = 60.0  # seconds any one check may take here before its test fails as hung
W = np.array([[0.5, -0.3, 0.2], [0.1, 0.4, -0.6]])
AT = (1, 0)  # the element of W where the losses misbehave


class Faulty:
    """sum(sin(W)) + sum(b^2), except where W[1, 0] is shifted up by a step.

    ``how``: "exit" (os._exit(3)), "segv" (SIGSEGV), "hang" (sleeps ``seconds``),
    "raise" (FloatingPointError) or "fine". ``anywhere`` lets it misbehave in this
    process too (only for faults this process survives).
    """

    def __init__(self, how: str, seconds: float = 600.0, anywhere: bool = False) -> None:
        self.how, self.seconds, self.anywhere = how, seconds, anywhere
        self.parent = os.getpid()  # travels with the loss: a worker's import would see its own

    def __call__(self, p):
        value = float(np.sum(np.sin(p["W"])) + np.sum(p["b"] ** 2))
        # Coordinate steps are ~1e-6; the noise measurement's are ~1e-12.
        stepped = p["W"][AT] > W[AT] + 1e-9
        if stepped and (self.anywhere or os.getpid() != self.parent):
            if self.how == "exit":
                os._exit(3)
            if self.how == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)
            if self.how == "hang":
                time.sleep(self.seconds)
            if self.how == "raise":
                raise FloatingPointError("the loss's own error")
        return value


def params():
    return {"W": W.copy(), "b": np.array([0.3, -0.2])}


def grad(p, wrong=False):
    g = {"W": np.cos(p["W"]), "b": 2 * p["b"]}
    if wrong:
        g["W"][0, 2] *= 2.0
    return g


def bounded(call, seconds: float = BOUND):
    """``call()``'s result or exception; the test fails if it runs over ``seconds``."""
    outcome: dict[str, object] = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as error:  # handed to the test below
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"the check was still running after {seconds:g} s: it hangs")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]


def children() -> set[int]:
    """This process's child processes, alive or unreaped (multiprocessing's tracker aside)."""
    try:
        import psutil

        pids = {c.pid for c in psutil.Process().children(recursive=True)}
    except ImportError:  # pragma: no cover - psutil comes with Dask
        pids = {p.pid for p in multiprocessing.active_children()}
    return pids - {getattr(resource_tracker._resource_tracker, "_pid", None)}


@pytest.fixture
def no_orphans():
    """Fails the test if any child process started during it is still there after it."""
    before = children()
    yield
    left = children() - before
    assert not left, f"child processes outlived the check: {sorted(left)}"


def check_worker_error(error, cause: str):
    assert isinstance(error, gradproof.GradproofError) and isinstance(error, RuntimeError)
    assert error.cause == cause
    assert error.coordinates == (("W", AT),)
    message = str(error)
    assert "W[1, 0]" in message and "Fix: " in message
    return message


# ------------------------------------------------------------------ a worker dies


@pytest.mark.parametrize(
    ("how", "cause", "words"),
    [
        ("exit", "exit code 3", "exit code 3"),
        pytest.param("segv", "signal SIGSEGV", "a crash in native code", marks=POSIX),
    ],
)
def test_a_worker_that_dies_ends_the_check_naming_the_point_and_the_cause(
    how, cause, words, no_orphans
):
    p = params()
    with pytest.raises(WorkerError) as caught:
        bounded(lambda: gradproof.check(Faulty(how), p, grad, workers=2))
    message = check_worker_error(caught.value, cause)
    assert message.startswith("A worker process died (") and words in message
    np.testing.assert_array_equal(p["W"], W)


def test_a_worker_that_cannot_unpickle_the_loss_is_a_worker_error(no_orphans):
    with pytest.raises(WorkerError) as caught:
        bounded(lambda: gradproof.check(Unpicklable(), params(), grad, workers=2))
    assert caught.value.cause == "start" and "could not start" in str(caught.value)


class Unpicklable(Faulty):
    """Pickles, but fails to unpickle (as a loss from an unimportable module would)."""

    def __init__(self) -> None:
        super().__init__("fine")

    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise ImportError("this loss cannot be rebuilt in a worker")


# ------------------------------------------------------------------ a worker hangs


@pytest.mark.parametrize(
    ("options", "cause", "words"),
    [
        ({"timeout": 1.0}, "timeout", "past `timeout`=1 s"),
        ({"budget": 2.0}, "budget", "past the end of the budget (2 s)"),
    ],
)
def test_a_hung_worker_is_ended_by_the_timeout_or_the_budget(options, cause, words, no_orphans):
    with pytest.raises(WorkerError) as caught:
        bounded(lambda: gradproof.check(Faulty("hang"), params(), grad, workers=2, **options))
    message = check_worker_error(caught.value, cause)
    assert words in message and "on a worker process (now ended)" in message


def test_a_call_that_ends_soon_after_the_budget_is_no_fault(no_orphans):
    slow = Faulty("hang", seconds=0.3)  # past the budget's end, but well within the grace
    report = bounded(lambda: gradproof.check(slow, params(), grad, workers=2, budget=0.2))
    assert report.status != "fail"  # a report, as far as the budget went: no error


class EverywhereSlow(Faulty):
    """Takes ``seconds`` at every call: slow, not hung."""

    def __call__(self, p):
        time.sleep(self.seconds)
        return Faulty("fine")(p)


@pytest.mark.parametrize("workers", [None, 2])
def test_a_loss_slower_than_its_whole_budget_spends_the_set_up_and_gets_a_report(workers):
    slow = EverywhereSlow("fine", seconds=0.05)  # the set-up alone (~20 calls) outlasts it
    report = bounded(lambda: gradproof.check(slow, params(), grad, budget=0.3, workers=workers))
    assert "ran out" in report.coverage


# ------------------------------------------------------------------ in this process


@pytest.mark.parametrize(
    ("options", "cause", "words"),
    [
        ({"timeout": 0.2}, "timeout", "past `timeout`=0.2 s"),
        ({"budget": 0.5}, "budget", "past the end of the budget (0.5 s)"),
    ],
)
def test_a_call_past_the_timeout_or_budget_in_this_process_raises_once_it_returns(
    options, cause, words
):
    slow = Faulty("hang", seconds=1.8, anywhere=True)
    with pytest.raises(WorkerError) as caught:
        bounded(lambda: gradproof.check(slow, params(), grad, **options))
    message = check_worker_error(caught.value, cause)
    assert words in message and "in this process" in message


def test_a_timeout_every_call_meets_changes_nothing():
    plain = gradproof.check(Faulty("fine"), params(), grad)
    timed = gradproof.check(Faulty("fine"), params(), grad, timeout=30.0)
    assert timed.to_dict() | {"seconds": 0} == plain.to_dict() | {"seconds": 0}


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf"), True, "10s", [1]])
def test_a_bad_timeout_names_the_argument_and_the_fix(timeout):
    calls = []
    with pytest.raises(gradproof.InvalidArgument) as caught:
        gradproof.check(lambda p: calls.append(1) or 0.0, params(), grad, timeout=timeout)
    message = str(caught.value)
    assert message.startswith("`timeout`=") and "Fix: " in message
    assert calls == []


# ------------------------------------------------------------------ nothing left behind


@pytest.mark.parametrize(
    ("loss", "wrong", "raises"),
    [
        (Faulty("fine"), False, None),  # success
        (Faulty("fine"), True, None),  # a wrong gradient: a failing report
        (Faulty("raise"), False, FloatingPointError),  # the loss's own error, unchanged
    ],
    ids=["passes", "fails", "raises"],
)
def test_no_worker_outlives_a_check_however_it_ends(loss, wrong, raises, no_orphans):
    def run():
        return gradproof.check(loss, params(), lambda p: grad(p, wrong), workers=2)

    if raises is None:
        assert bounded(run).passed is not wrong
    else:
        with pytest.raises(raises, match="the loss's own error"):
            bounded(run)


def test_the_callers_state_is_untouched_by_a_check_with_workers():
    np.random.seed(7)
    random.seed(7)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    environment, handler = dict(os.environ), signal.getsignal(signal.SIGINT)
    main = dict(vars(sys.modules["__main__"]))
    with pytest.raises(WorkerError):
        bounded(lambda: gradproof.check(Faulty("exit"), params(), grad, workers=2))
    gradproof.check(Faulty("fine"), params(), grad, workers=2)
    numpy_after = np.random.get_state()
    assert np.array_equal(numpy_after[1], numpy_state[1]) and numpy_after[2] == numpy_state[2]
    assert random.getstate() == python_state
    assert dict(os.environ) == environment and signal.getsignal(signal.SIGINT) == handler
    assert dict(vars(sys.modules["__main__"])) == main


# ------------------------------------------------------------------ Ctrl-C and a killed parent

SCRIPT = """
import multiprocessing, sys, time
import numpy as np
import gradproof

W = np.array([[0.5, -0.3, 0.2], [0.1, 0.4, -0.6]])


def hangs(p):  # in a worker, at W[1, 0] stepped: says so, then hangs
    if multiprocessing.parent_process() is not None and p["W"][1, 0] > W[1, 0] + 1e-9:
        open(sys.argv[1], "a").close()
        time.sleep(600)
    return float(np.sum(np.sin(p["W"])))


if __name__ == "__main__":
    try:
        gradproof.check(hangs, {"W": W}, lambda p: {"W": np.cos(p["W"])}, workers=2)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


def run_until_hung(tmp_path):
    """A script whose check hangs on a worker, in a session of its own, once it hangs."""
    script, marker = tmp_path / "hangs.py", tmp_path / "hung"
    script.write_text(textwrap.dedent(SCRIPT))
    process = subprocess.Popen(
        [sys.executable, str(script), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    for _ in range(600):  # 60 s at most
        if marker.exists() or process.poll() is not None:
            break
        time.sleep(0.1)
    assert marker.exists(), process.communicate(timeout=BOUND)
    return process


def in_session(session: int) -> set[int]:
    """The processes still alive in ``session`` (zombies aside), from psutil or /proc."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with Dask
        return _in_session_from_proc(session)
    alive = set()
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getsid(proc.pid) == session and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.add(proc.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return alive


def workers_in(session: int) -> set[int]:
    """The worker processes (started by multiprocessing's spawn) alive in ``session``."""
    return {pid for pid in in_session(session) if "spawn_main" in _command(pid)}


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as line:
            return line.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        try:
            import psutil

            return " ".join(psutil.Process(pid).cmdline())
        except Exception:
            return ""


def session_ends(session: int) -> bool:
    """Whether every process of ``session`` is gone within BOUND seconds.

    Python's multiprocessing resource tracker, a helper every process that uses
    multiprocessing starts once, outlives its parent by the moment it takes to read
    that the parent is gone: hence a wait, not a snapshot.
    """
    for _ in range(int(BOUND * 10)):
        if not in_session(session):
            return True
        time.sleep(0.1)
    return False


def _in_session_from_proc(session: int) -> set[int]:  # pragma: no cover - without psutil
    if not os.path.isdir("/proc"):
        pytest.skip("needs psutil or /proc to list a session's processes")
    alive = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == session:  # state, ..., session id
            alive.add(int(entry))
    return alive


@POSIX
@pytest.mark.parametrize("target", ["the terminal's process group", "the parent alone"])
def test_ctrl_c_ends_the_check_and_every_worker(tmp_path, target):
    process = run_until_hung(tmp_path)
    if target == "the parent alone":
        process.send_signal(signal.SIGINT)
    else:  # Ctrl-C in a terminal signals the whole foreground group
        os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=BOUND)
    assert "interrupted" in out, err
    assert workers_in(process.pid) == set()  # ended before the parent returned
    assert session_ends(process.pid)


@POSIX
def test_workers_exit_by_themselves_when_their_parent_is_killed_outright(tmp_path):
    process = run_until_hung(tmp_path)
    process.kill()  # SIGKILL: the parent can end nothing
    process.communicate(timeout=BOUND)
    assert session_ends(process.pid)


# ------------------------------------------------------------------ a user's executor


def test_a_user_process_pool_that_breaks_is_a_worker_error_naming_the_pieces():
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool, pytest.raises(WorkerError) as caught:
        bounded(lambda: gradproof.check(Faulty("exit"), params(), grad, executor=pool))
    assert caught.value.cause == "BrokenProcessPool"
    assert ("W", AT) in caught.value.coordinates and "A worker was lost" in str(caught.value)


def test_the_wait_for_a_hung_user_executor_is_bounded_by_the_timeout():
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(2, mp_context=context)
    try:
        with pytest.raises(WorkerError) as caught:
            bounded(
                lambda: gradproof.check(Faulty("hang"), params(), grad, executor=pool, timeout=1.0)
            )
        assert caught.value.cause == "timeout" and ("W", AT) in caught.value.coordinates
        assert "on the executor (yours to end)" in str(caught.value)
    finally:  # the executor is the test's: end it, hung worker and all
        for process in list(pool._processes.values()):
            process.kill()
        pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------ Dask


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed", reason="needs gradproof[dask]")
    import dask

    # One retry, so that a task that kills every worker gives up after two deaths.
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        distributed.LocalCluster(**LOCAL_CLUSTER) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


class DiesOnce(Faulty):
    """Kills the Dask worker it runs on the first time it reaches W[1, 0]; then fine."""

    def __init__(self, marker: str) -> None:
        super().__init__("exit")
        self.marker = marker

    def __call__(self, p):
        if p["W"][AT] > W[AT] + 1e-9 and os.getpid() != self.parent:
            if not os.path.exists(self.marker):
                open(self.marker, "a").close()
                os._exit(3)
        return Faulty("fine")(p)


@pytest.mark.slow
def test_a_dask_worker_lost_mid_check_loses_nothing(dask_client, tmp_path):
    serial = gradproof.check(Faulty("fine"), params(), lambda p: grad(p, True))
    loss = DiesOnce(str(tmp_path / "died"))
    executor = dask_client.get_executor()
    remote = bounded(
        lambda: gradproof.check(loss, params(), lambda p: grad(p, True), executor=executor)
    )
    assert (tmp_path / "died").exists()  # a worker did die, mid-check
    assert remote.to_dict() | {"seconds": 0} == serial.to_dict() | {"seconds": 0}


@pytest.mark.slow
def test_a_loss_that_kills_every_dask_worker_is_a_worker_error(dask_client):
    executor = dask_client.get_executor()
    with pytest.raises(WorkerError) as caught:
        bounded(lambda: gradproof.check(Faulty("exit"), params(), grad, executor=executor))
    assert caught.value.cause == "KilledWorker" and ("W", AT) in caught.value.coordinates
    dask_client.wait_for_workers(2, timeout=BOUND)  # the cluster itself recovers
