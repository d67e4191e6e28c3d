"""The ASL interpreter the release tests run: moto's port of LocalStack's Step Functions engine.

Why this one: it executes JSONata states (Arguments, Output, Assign, Condition, Map Items,
Retry/Catch with States.QueryEvaluationError, variables and their scopes) with the semantics
LocalStack checks against AWS, and it calls AWS through real botocore clients, so every request
the definition makes is validated against the service's API model. aws-local-stepfunctions, the
other candidate, runs JSONPath only.

moto ships the engine with a few parts cut out. The patches below put them back, each small and
each covered by tests/release/test_release_interpreter.py:

1. JSONata evaluation. moto stubs it (LocalStack calls jsonata-java through a JVM). We evaluate with
   jsonata-python, a port of the same jsonata-java reference (pin: jsonata-python==0.7.1).
2. JSONata runtime errors (``$error()``, type errors) become ``States.QueryEvaluationError`` failures
   that Retry and Catch see, as the States Language specification says; unpatched they surface as
   an uncatchable States.Runtime.
3. String variables are encoded as JSON string literals; unpatched a quote or backslash in a value
   (an error cause, a reason) breaks every later expression.
4. aws-sdk request/response casing. Step Functions takes PascalCase arguments and returns PascalCase
   results for every service; moto stubs the mapping to the API's own member names.
5. aws-sdk error names. Step Functions names an aws-sdk error "<Service>.<Error>" with the service in
   PascalCase ("Ecs.", "Ecr.", "Ssm."); moto knows the spelling only for DynamoDB and Step Functions.

7. Who calls. Each Task's AWS calls are made as its execution's role (the context object's
   Execution.RoleArn): `current_caller()` tells the fakes, which authorize the call
   (emulation/authorization.py). moto's own state_credentials (a Task's Credentials field) are
   not used by the release.

8. States.DataLimitExceeded is terminal. AWS: it is "a terminal error that can't be caught by the
   States.ALL error type"; unpatched, a States.ALL Retry or Catch catches it. moto already fails a
   task result or state output of 256 KiB or more with it; the .sync result is checked too.

9. The machine's own TimeoutSeconds on the virtual clock: unpatched, moto waits for it in real
   seconds (hours for the release), so no execution ever ended TIMED_OUT.

10. The history cap: an execution whose history would pass 25,000 events fails (States.Runtime
   here: AWS documents the cap, not the error name; config keeps the worst case below it).

11. A reserved error leaving a Map iteration keeps its name. Unpatched, moto rebuilds the
   iteration's error as a custom name, which refuses the `States.` prefix, so any `States.*` error
   inside a Map (DataLimitExceeded, Timeout, TaskFailed) surfaced as States.Runtime.

6. A stopped execution stays stopped. StopExecution ends an execution ABORTED; unpatched, an error
   raised by the Task that was running when it was stopped overwrites the stop, and the execution
   ends FAILED through the definition's Catch (a race: it showed as a flaky test).

For speed only (same behaviour): JSONata expressions are compiled once and evaluated with $states
and the variables bound as values, a definition is parsed once (each execution runs its own copy
of the parsed program), and the JSONPath of a ResultPath is parsed once (moto parses "$" again,
with a freshly built PLY parser, at every state).

Time is virtual: Retry intervals, Wait states and TimeoutSeconds advance a clock
(`CLOCK`) instead of sleeping, so a 30-minute rollout takes milliseconds and the number of
transitions is what AWS would count.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib
import json
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from moto.stepfunctions.parser import models as parser_models
from moto.stepfunctions.parser.api import EvaluationFailedEventDetails, HistoryEventType
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent, FailureEventException
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.common.string.string_expression import StringJSONata
from moto.stepfunctions.parser.asl.component.intrinsic.jsonata import get_intrinsic_functions_declarations
from moto.stepfunctions.parser.asl.component.program.program import Program
from moto.stepfunctions.parser.asl.component.state.exec import execute_state
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import inline_iteration_component, iteration_worker
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import job as map_job
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk,
    state_task_service_callback,
    state_task_service_dynamodb,
    state_task_service_ecs,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import StateTaskService
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.eval import states as eval_states
from moto.stepfunctions.parser.asl.eval import variable_store
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata
from moto.stepfunctions.parser.asl.jsonata.jsonata import extract_jsonata_variable_references
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str
from moto.stepfunctions.parser.backend import execution_worker
from moto.stepfunctions.parser.utils import TMP_THREADS

# botocore and jsonata-python ship no type information.
jsonata: Any = importlib.import_module("jsonata")
_SESSION: Any = importlib.import_module("botocore.session").get_session()

# Virtual seconds the .sync integration waits between two DescribeTasks calls.
SYNC_POLL_SECONDS = 6.0


class VirtualClock:
    """A discrete-event clock: seconds since an arbitrary start, moved only by waiting.

    Every thread of the interpreter (an execution, each state's worker, each Map iteration) is a
    participant, counted from the moment it is started to the moment it ends. A participant that
    waits (a Wait state, a Retry interval, a .sync poll, an event with a timeout) registers its
    wake-up time and blocks; a participant waiting for another thread (a join, a Map waiting for
    its iterations) blocks without one. When every participant is blocked, time jumps to the
    earliest wake-up and only the threads due then run: two 5-minute waits side by side take 5
    virtual minutes, not 10, and the order of events is the order AWS would see.

    A thread that is not a participant (a test's own thread) may sleep too: it counts as one for
    the length of its sleep. If the count is ever wrong (a participant blocked somewhere this clock
    does not see), nothing would move: after STALL_SECONDS of real time with no change at all, and
    no participant running, the clock jumps anyway and counts it in `forced_jumps` (the bench
    reports it; it should stay 0). A participant that runs, however long, holds time still.
    """

    STALL_SECONDS = 2.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._now = 0.0
        self._active = 0  # participants not blocked
        # Blocked threads: waiter id -> (the condition it waits for, its wake-up time or None).
        self._waiters: dict[int, tuple[Callable[[], bool], float | None]] = {}
        self._ids = 0
        self._version = 0  # bumped by every change a blocked thread could be waiting for
        self.forced_jumps = 0
        self._local = threading.local()

    # ---- reading --------------------------------------------------------------------------------
    def now(self) -> float:
        with self._cond:
            return self._now

    # ---- participants -----------------------------------------------------------------------------
    def is_participant(self) -> bool:
        return bool(getattr(self._local, "participant", False))

    def thread_starting(self) -> None:
        """Called by the parent before a participant thread starts (so it is counted at once)."""
        with self._cond:
            self._active += 1
            self._version += 1

    def thread_running(self) -> None:
        self._local.participant = True

    @contextmanager
    def participating(self) -> Iterator[None]:
        """Count the current thread as a participant meanwhile: time holds still while it starts
        several threads that should begin at the same virtual moment."""
        if self.is_participant():
            yield
            return
        self.thread_starting()
        self._local.participant = True
        try:
            yield
        finally:
            self._local.participant = False
            self.thread_ended()

    def thread_ended(self) -> None:
        with self._cond:
            self._active -= 1
            self._changed()

    # ---- waiting ----------------------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        with self._cond:
            self._block(lambda: False, self._now + max(0.0, float(seconds)))

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Block until `predicate()` (checked under the clock's lock, re-checked on every change)
        or until `timeout` virtual seconds have passed; returns the predicate's last value."""
        with self._cond:
            if predicate():
                return True
            self._block(predicate, None if timeout is None else self._now + max(0.0, float(timeout)))
            return predicate()

    def notify(self) -> None:
        """Something a blocked thread may wait for has changed (an event was set)."""
        with self._cond:
            self._changed()

    def watch(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """For a thread that takes no part in the clock (a test's): block, in real time, until
        `predicate()` holds, checked under the clock's lock at every change and at least every 50 ms
        (a change made without a notification); False after `timeout` real seconds."""
        return self._real_wait(predicate, timeout)

    def drain(self, timeout: float = 30.0) -> bool:
        """Let every participant run to its end, time moving as it does while they wait (a state's
        thread can outlive its stopped execution by one poll); False if some still remain after
        `timeout` real seconds."""

        def nudge() -> None:
            self._advance_if_idle()
            self._cond.notify_all()

        return self._real_wait(lambda: not self._waiters and self._active == 0, timeout, between=nudge)

    def _real_wait(self, done: Callable[[], bool], timeout: float, between: Callable[[], None] | None = None) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if between is not None:
                    between()
                self._cond.wait(min(remaining, 0.05))
        return True

    def reset(self) -> None:
        """Time back to 0; threads still waiting keep their remaining wait."""
        with self._cond:
            now = self._now
            self._now = 0.0
            for waiter, (done, deadline) in list(self._waiters.items()):
                if deadline is not None:
                    self._waiters[waiter] = (done, max(0.0, deadline - now))
            self.forced_jumps = 0
            self._changed()

    # ---- internals (all called with self._cond held) ------------------------------------------------
    def _changed(self) -> None:
        self._version += 1
        self._advance_if_idle()
        self._cond.notify_all()

    def _earliest(self) -> float | None:
        deadlines = [deadline for _, deadline in self._waiters.values() if deadline is not None]
        return min(deadlines) if deadlines else None

    def _runnable(self, waiter: int) -> bool:
        """The waiter's condition holds or its wake-up time has come. The wake-up time is read from
        the waiter's entry, never kept aside: reset() moves it, and a copy kept from before a reset
        would never come (time would stop at the moved one, for every participant)."""
        done, deadline = self._waiters[waiter]
        return done() or (deadline is not None and self._now >= deadline)

    def _advance_if_idle(self) -> None:
        # Idle: no participant runs, and none is about to (a waiter whose condition already holds,
        # an event just set, is runnable though it has not woken yet).
        if self._active > 0 or any(self._runnable(waiter) for waiter in self._waiters):
            return
        earliest = self._earliest()
        if earliest is not None and earliest > self._now:
            self._now = earliest

    def _block(self, done: Callable[[], bool], deadline: float | None) -> None:
        participant = self.is_participant()
        self._ids += 1
        waiter = self._ids
        self._waiters[waiter] = (done, deadline)
        # A non-participant counts as one while it sleeps, so the decrement below balances.
        if not participant:
            self._active += 1
        self._active -= 1
        self._changed()
        try:
            while not self._runnable(waiter):
                seen = self._version
                self._cond.wait(self.STALL_SECONDS)
                earliest = self._earliest()
                # Nothing changed for STALL_SECONDS of real time and no participant runs: one is
                # blocked where the clock cannot see it. Move on rather than hang. Never while one
                # runs: a slow step (a cold start, a loaded machine) is work, and jumping past it
                # would time out an execution that AWS would not.
                if (
                    not self._runnable(waiter)
                    and self._version == seen
                    and self._active == 0
                    and earliest is not None
                    and earliest > self._now
                ):
                    self._now = earliest
                    self.forced_jumps += 1
                    self._changed()
        finally:
            self._waiters.pop(waiter, None)
            self._active += 1
            if not participant:
                self._active -= 1
            self._version += 1


CLOCK = VirtualClock()


class _VirtualTime:
    """Stands in for the `time` module inside the interpreter's waiting code."""

    @staticmethod
    def sleep(seconds: float) -> None:
        CLOCK.sleep(seconds)

    @staticmethod
    def time() -> float:
        return CLOCK.now()


class _VirtualEvent:
    """threading.Event on the virtual clock: wait(timeout) times out in virtual seconds, and a
    participant waiting on it counts as blocked."""

    def __init__(self) -> None:
        self._flag = False

    def set(self) -> None:
        with CLOCK._cond:
            self._flag = True
            CLOCK._changed()

    def clear(self) -> None:
        with CLOCK._cond:
            self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        return CLOCK.wait_until(lambda: self._flag, timeout)


class _VirtualThread(threading.Thread):
    """A participant of the virtual clock from start() to the end of its run; join() blocks it
    until the thread's run has ended (then the real join, which returns at once)."""

    _finished = False

    @property
    def finished(self) -> bool:
        return self._finished

    def start(self) -> None:
        CLOCK.thread_starting()
        try:
            super().start()
        except BaseException:
            CLOCK.thread_ended()
            raise

    def run(self) -> None:
        CLOCK.thread_running()
        try:
            super().run()
        finally:
            with CLOCK._cond:
                self._finished = True
            CLOCK.thread_ended()

    def join(self, timeout: float | None = None) -> None:
        # The interpreter joins an execution's thread with the machine's TimeoutSeconds in real
        # seconds, as before; in virtual time the join waits for the thread to end.
        CLOCK.wait_until(lambda: self._finished, None)
        super().join(timeout)


class _VirtualThreading:
    """Stands in for the `threading` module in the interpreter's modules that start threads or wait."""

    Event = _VirtualEvent
    Thread = _VirtualThread
    Lock = threading.Lock
    RLock = threading.RLock


# ---- patch 1: JSONata through jsonata-python ---------------------------------------------------------
def _eval_jsonata(expression: str) -> Any:
    try:
        return jsonata.Jsonata(expression).evaluate(None)
    except Exception as error:  # jsonata-python raises JException and Python errors alike
        raise moto_jsonata.JSONataException("JSONataError", str(error)) from error


# ---- patch 2: runtime errors are States.QueryEvaluationError --------------------------------------
_original_string_jsonata_eval: Callable[..., None] = StringJSONata._eval_body
_JSONATA_NULL = importlib.import_module("jsonata.utils").Utils.NULL_VALUE


@functools.cache
def _compiled(expression: str) -> Any:
    return jsonata.Jsonata(expression)


@functools.cache
def _bindable(expression: str) -> bool:
    """Whether the expression needs none of the AWS-specific functions moto declares in front of
    it. Raises, as moto does at every evaluation, on a reference the States language forbids (a
    call that raises is not cached)."""
    references = extract_jsonata_variable_references(expression)
    return not get_intrinsic_functions_declarations(variable_references=references)


def _evaluate_with_bindings(self: StringJSONata, env: Any) -> bool:
    """Speed: evaluate the expression, compiled once, with $states and the variables
    bound as values, instead of moto's way (every variable serialised into declarations in front
    of the expression, and the whole text parsed again at every evaluation). Same semantics; not
    used (False) when the expression needs one of the AWS-specific functions moto declares."""
    if not _bindable(self.expression):
        return False
    compiled = _compiled(self.expression)
    store = env.variable_store
    variables = {**store._outer_scope, **store._inner_scope}
    if "$states" in self.expression:  # its conversion is most of an evaluation: only where the text names it
        # $states as JSON values (moto keeps the context's times as datetime objects).
        variables["states"] = json.loads(to_json_str(env.states._states_data, separators=(",", ":")))
    # A variable holding JSON null is bound to jsonata-python's null (None would be "undefined").
    bindings = {name: _JSONATA_NULL if value is None else value for name, value in variables.items()}
    try:
        result = compiled.evaluate(None, bindings)
        # null or nothing (undefined, which fails the state): moto's own path tells them apart.
        if result is None and not _compiled("$exists((" + self.expression + "))").evaluate(None, bindings):
            return False
    except Exception as error:  # jsonata-python raises JException and Python errors alike
        raise moto_jsonata.JSONataException("JSONataError", str(error)) from error
    env.stack.append(result)
    return True


def _string_jsonata_eval(self: StringJSONata, env: Any) -> None:
    try:
        if not _evaluate_with_bindings(self, env):
            _original_string_jsonata_eval(self, env)
    except moto_jsonata.JSONataException as error:
        name = StatesErrorName(typ=StatesErrorNameType.StatesQueryEvaluationError)
        details = EvaluationFailedEventDetails(
            error=name.error_name,
            cause=f"An error occurred while evaluating the expression '{self.expression}': {error.details}",
            state=str(env.states.context_object.context_object_data.get("State", {}).get("Name", "")),
        )
        raise FailureEventException(
            FailureEvent(
                env=env,
                error_name=name,
                event_type=HistoryEventType.EvaluationFailed,
                event_details=EventDetails(evaluationFailedEventDetails=details),  # type: ignore[typeddict-item]
            )
        ) from error


# ---- patch 3: string variables as JSON string literals ---------------------------------------------
def _encode_declarations(bindings: dict[str, Any]) -> str:
    return "".join(f"{name}:={to_json_str(value, separators=(',', ':'))};" for name, value in bindings.items())


# ---- patch 4: PascalCase <-> API member names, from botocore's service models ----------------------
_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


def _operation_model(task: StateTaskService, boto_service_name: str | None, service_action_name: str | None) -> Any:
    service = task._get_boto_service_name(boto_service_name=boto_service_name)
    action = (service_action_name or task.resource.api_action).replace("_", "").lower()
    with _MODELS_LOCK:
        if service not in _MODELS:
            _MODELS[service] = _SESSION.get_service_model(service)
        model = _MODELS[service]
    for name in model.operation_names:
        if name.lower() == action:
            return model.operation_model(name)
    raise KeyError(f"{service} has no operation {action}")


def _normalise_parameters(
    self: StateTaskService, parameters: dict[str, Any], boto_service_name: str | None = None, service_action_name: str | None = None
) -> None:
    shape = _operation_model(self, boto_service_name, service_action_name).input_shape
    if shape is not None:
        self._to_boto_request(parameters, shape)


def _normalise_response(
    self: StateTaskService, response: Any, boto_service_name: str | None = None, service_action_name: str | None = None
) -> None:
    shape = _operation_model(self, boto_service_name, service_action_name).output_shape
    if shape is not None:
        self._from_boto_response(response, shape)


# ---- speed: a definition is parsed once, each execution gets its own copy ------------------------
# Kept pickled: unpickling the release's program is about three times faster than deep-copying it.
_PROGRAMS: dict[str, bytes] = {}
_PROGRAMS_LOCK = threading.Lock()


# Parsed programs are also kept on disk, shared by the pytest workers and later sessions: the parse
# costs about a second per definition in every process, loading a pickled program milliseconds.
# Keyed by moto's version and the definition's text; ASL_CACHE=off turns it off.
ASL_CACHE = Path(os.environ.get("ASL_CACHE") or Path(__file__).resolve().parent.parent / ".synth-cache" / "asl")
_ASL_CACHE_KEPT = 400


def _parsed(definition: str) -> Any:
    """A new copy of the definition's parsed program, parsed once per process (a definition that
    does not parse raises as before and is not kept)."""
    with _PROGRAMS_LOCK:
        if definition not in _PROGRAMS:
            _PROGRAMS[definition] = _load_or_parse(definition)
        pickled = _PROGRAMS[definition]
    return pickle.loads(pickled)  # noqa: S301 - pickled by this module


def _load_or_parse(definition: str) -> bytes:
    if str(ASL_CACHE) == "off":
        return pickle.dumps(AmazonStateLanguageParser.parse(definition)[0], protocol=pickle.HIGHEST_PROTOCOL)
    key = hashlib.sha256(f"{metadata.version('moto')}\0{definition}".encode()).hexdigest()[:32]
    path = ASL_CACHE / f"{key}.pickle"
    with _parsing(path.with_suffix(".lock")):  # a process parsing this definition: wait, then read its result
        with contextlib.suppress(Exception):  # missing, half-written by a process that died, or unreadable
            pickled = path.read_bytes()
            pickle.loads(pickled)  # noqa: S301 - written by this function only
            return pickled
        pickled = pickle.dumps(AmazonStateLanguageParser.parse(definition)[0], protocol=pickle.HIGHEST_PROTOCOL)
        with contextlib.suppress(OSError):
            entries = sorted(ASL_CACHE.glob("*.pickle"), key=lambda entry: entry.stat().st_mtime)
            for stale in entries[: max(0, len(entries) - _ASL_CACHE_KEPT)]:
                stale.unlink(missing_ok=True)
                stale.with_suffix(".lock").unlink(missing_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_bytes(pickled)
            os.replace(temporary, path)  # atomic: a reader sees a whole program or none
        return pickled


@contextmanager
def _parsing(lock_path: Path) -> Iterator[None]:
    """One process at a time parses a definition (pytest's workers start together on a cold cache
    and would each spend the same second on it); without a writable cache folder, no lock."""
    try:
        ASL_CACHE.mkdir(parents=True, exist_ok=True)
        lock = lock_path.open("a")
    except OSError:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


class _CachedParser:
    """Stands in for the parser where CreateStateMachine validates a definition: moto parses it
    there and again at the first execution; one parse serves both."""

    @staticmethod
    def parse(definition: str) -> tuple[Any, None]:
        return _parsed(definition), None


def _evaluation_entrypoint(self: execution_worker.ExecutionWorker) -> Any:
    """moto parses the definition (ANTLR, in Python: about a second for the release's) at every
    execution start; an unpickled copy of the parsed program is the same program, far faster.
    A copy per execution: states keep per-evaluation fields (a Choice's next state)."""
    return _parsed(self._evaluation_details.state_machine_details.definition)


# ---- speed: a ResultPath's JSONPath is parsed once ----------------------------------------------------
# jsonpath_ng builds a new PLY parser for every parse; a parsed path is not changed by its use.
_parsed_json_path = functools.lru_cache(maxsize=256)(importlib.import_module("jsonpath_ng").parse)


# ---- virtual time for Wait states -------------------------------------------------------------------
def _wait_interval(self: WaitFunction, env: Any, wait_seconds: int) -> None:
    """A Wait state's Seconds on the virtual clock (moto waits on a real threading.Event). It ends
    early when the execution stops or times out: an ended execution must not keep a wake-up on the
    shared clock, or it would move time for whatever runs next."""
    if wait_seconds > 0 and env.is_running():
        CLOCK.wait_until(lambda: not env.is_running(), wait_seconds)


def _notifying(method: Callable[..., None]) -> Callable[..., None]:
    """An Environment state change, then the clock told (a Wait above may be waiting for it)."""

    def changed(self: Any, *args: Any, **kwargs: Any) -> None:
        method(self, *args, **kwargs)
        CLOCK.notify()

    return changed


_INSTALLED: dict[str, bool] = {}


# ---- patch 6: a stopped execution stays stopped ------------------------------------------------------
_UNPATCHED_SET_ERROR = Environment.set_error


def _set_error_unless_stopped(self: Any, error: Any) -> None:
    with self._state_mutex:  # reentrant: the unpatched method takes it again
        if not isinstance(self._program_state, ProgramStopped):
            _UNPATCHED_SET_ERROR(self, error)


# ---- patch 7: who calls --------------------------------------------------------------------------------
_CALLER = threading.local()
_UNPATCHED_EVAL_EXECUTION = StateTaskService._eval_execution
# moto's state machine ARN -> the synthesized machine's ARN (Interpreter.machine registers it).
MACHINE_ALIASES: dict[str, str] = {}


def current_caller() -> tuple[str, str] | None:
    """(role ARN, state machine ARN) of the Task running in this thread, None outside a Task."""
    caller: tuple[str, str] | None = getattr(_CALLER, "value", None)
    return caller


def _eval_execution_as_role(self: StateTaskService, env: Any) -> None:
    context = env.states.context_object.context_object_data
    machine = str(context.get("StateMachine", {}).get("Id", ""))
    previous = getattr(_CALLER, "value", None)
    _CALLER.value = (str(context.get("Execution", {}).get("RoleArn", "")), MACHINE_ALIASES.get(machine, machine))
    try:
        _UNPATCHED_EVAL_EXECUTION(self, env)
    finally:
        _CALLER.value = previous


# ---- patch 8: States.DataLimitExceeded is not caught by States.ALL ---------------------------------
_UNPATCHED_ERROR_EQUALS = ErrorEqualsDecl._eval_body
_DATA_LIMIT = StatesErrorName(typ=StatesErrorNameType.StatesStatesDataLimitExceeded)
_STATES_ALL = StatesErrorName(typ=StatesErrorNameType.StatesALL)


def _error_equals(self: ErrorEqualsDecl, env: Any) -> None:
    # By name: out of a Map iteration the error arrives as a custom name with the same spelling.
    error = env.stack[-1] if env.stack else None
    if getattr(error, "error_name", None) == _DATA_LIMIT.error_name and _STATES_ALL in self.error_names:
        env.stack.pop()
        env.stack.append(False)
        return
    _UNPATCHED_ERROR_EQUALS(self, env)


_UNPATCHED_CALLBACK_AFTER = state_task_service_callback.StateTaskServiceCallback._after_eval_execution


def _callback_after_eval_execution(self: Any, env: Any, *args: Any, **kwargs: Any) -> None:
    """The .sync result (DescribeTasks' task) counts against the quota like any task result."""
    if self._is_integration_pattern():
        self._verify_size_quota(env=env, value=env.stack[-1])
    _UNPATCHED_CALLBACK_AFTER(self, env, *args, **kwargs)


# ---- patch 11: a States.* error out of a Map iteration keeps its reserved name ------------------------
def _iteration_error_name(error_name: str) -> ErrorName:
    if error_name.startswith("States."):
        return StatesErrorName.from_name(error_name)
    return CustomErrorName(error_name=error_name)


# ---- patch 9: the machine's TimeoutSeconds in virtual seconds ----------------------------------------
def _program_eval(self: Program, env: Any) -> None:
    """moto joins the program's thread for TimeoutSeconds of real time; here the wait is on the
    virtual clock, whose deadline is one of its wake-ups, so a timed-out execution ends at exactly
    its TimeoutSeconds. The program's thread is a participant of the clock like every other."""
    timeout = self.timeout_seconds.timeout_seconds if self.timeout_seconds else None
    env.next_state_name = self.start_at.start_at_name
    worker = _VirtualThread(target=super(Program, self).eval, args=(env,), daemon=True)
    TMP_THREADS.append(worker)
    worker.start()
    if not CLOCK.wait_until(lambda: worker.finished, timeout):
        env.set_timed_out()


# ---- patch 10: the 25,000-event history cap ------------------------------------------------------------
HISTORY_CAP = 25_000
_UNPATCHED_ADD_EVENT = EventManager.add_event


class HistoryLimitExceededError(RuntimeError):
    """Raised inside the state that would write event 25,001: the program fails the execution."""


def _add_event_within_cap(self: EventManager, *args: Any, **kwargs: Any) -> int:
    if len(self._history_event_list) >= HISTORY_CAP - 1 and not getattr(self, "_capped", False):
        setattr(self, "_capped", True)  # noqa: B010 - moto's class has no such field; the ExecutionFailed event still gets written
        raise HistoryLimitExceededError(f"the execution history reached its cap of {HISTORY_CAP} events")
    event_id: int = _UNPATCHED_ADD_EVENT(self, *args, **kwargs)
    return event_id


def install(client_factory: Callable[[str, str], Any]) -> None:
    """Patch the interpreter (once per process) and route its AWS calls to `client_factory`."""

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        return client_factory(service, region)

    for module in (state_task_service_aws_sdk, state_task_service_dynamodb, state_task_service_ecs):
        setattr(module, "boto_client_for", boto_client_for)  # noqa: B010 - moto does not export it
    if _INSTALLED.get("patched"):
        return
    state_task_service_aws_sdk._SERVICE_ERROR_NAMES.update({"ecs": "Ecs", "ecr": "Ecr", "ssm": "Ssm", "rds": "Rds"})
    patches: list[tuple[Any, str, Any]] = [
        (moto_jsonata, "_eval_jsonata", _eval_jsonata),
        (StringJSONata, "_eval_body", _string_jsonata_eval),
        (eval_states, "encode_jsonata_variable_declarations", _encode_declarations),
        (variable_store, "encode_jsonata_variable_declarations", _encode_declarations),
        (StateTaskService, "_normalise_parameters", _normalise_parameters),
        (StateTaskService, "_normalise_response", _normalise_response),
        (Environment, "set_error", _notifying(_set_error_unless_stopped)),
        (Environment, "set_stop", _notifying(Environment.set_stop)),
        (Environment, "set_timed_out", _notifying(Environment.set_timed_out)),
        (StateTaskService, "_eval_execution", _eval_execution_as_role),
        (ErrorEqualsDecl, "_eval_body", _error_equals),
        (Program, "eval", _program_eval),
        (iteration_worker, "CustomErrorName", _iteration_error_name),
        (EventManager, "add_event", _add_event_within_cap),
        (state_task_service_callback.StateTaskServiceCallback, "_after_eval_execution", _callback_after_eval_execution),
        # Virtual time.
        (retrier_decl, "time", _VirtualTime),
        (state_task_service_callback, "time", _VirtualTime),
        (state_task_service_callback, "_DELAY_SECONDS_SYNC_CONDITION_CHECK", SYNC_POLL_SECONDS),
        (execute_state, "threading", _VirtualThreading),
        # The discrete-event clock counts every thread the interpreter starts (VirtualClock).
        (execute_state, "Thread", _VirtualThread),
        (execution_worker, "Thread", _VirtualThread),
        (inline_iteration_component, "threading", _VirtualThreading),
        (map_job, "threading", _VirtualThreading),
        (WaitFunction, "_wait_interval", _wait_interval),
        (execution_worker.ExecutionWorker, "_get_evaluation_entrypoint", _evaluation_entrypoint),
        (parser_models, "AmazonStateLanguageParser", _CachedParser),
        (result_path, "parse", _parsed_json_path),
    ]
    for target, attribute, value in patches:
        assert hasattr(target, attribute), f"moto changed: {target.__name__}.{attribute} is gone"
        setattr(target, attribute, value)
    _INSTALLED["patched"] = True
