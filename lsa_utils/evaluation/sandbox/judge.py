"""The evaluator's side of one program: run the hidden tests here, calling into the sandboxed child.

The verdict cannot be forged because it is never computed where the code runs. The child only
defines the program and answers calls; the tests execute in the evaluator, where every name the
program defined is a `_Candidate` that sends its arguments to the child as plain data and gets back
plain data (`wire`): a fresh builtin value, or the name and text of an exception. "passed" means the
evaluator itself ran the tests to the end; nothing the child writes can produce it.

Differences from running the tests beside the program, which benchmark tests do not rely on: values
are copied across (a function that mutates its argument in place is not seen doing so), functions or
objects cannot be passed as arguments, and the tests cannot read files the program wrote.
"""

from __future__ import annotations

import builtins
import os
import select
import socket
import time
from typing import Any

from lsa_utils.evaluation.sandbox import wire

OUTPUT_LIMIT = 64 * 1024  # bytes of the program's stdout and stderr kept; the rest is read and dropped
_TESTS = ("<tests>",)
_BUILTIN_NAMES = frozenset(vars(builtins))


class Stopped(BaseException):
    """The child stopped answering: ``kind`` is "timeout", "died" or "protocol". A BaseException, so
    tests that catch Exception cannot swallow it."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind, detail)
        self.kind, self.detail = kind, detail


class CandidateError(Exception):
    """An exception the program raised that has no builtin Exception class of the same name here."""


class Channel:
    """The call socket to one child and its output pipe, under one wall-clock deadline."""

    def __init__(self, sock: socket.socket, output_fd: int, deadline: float) -> None:
        self.sock, self.output_fd, self.deadline = sock, output_fd, deadline
        self.stopped: Stopped | None = None
        self._reader = wire.FrameReader()
        self._output = bytearray()
        self._output_open = True

    def request(self, message: dict) -> dict:
        """Send one message and wait for the child's answer; raises `Stopped` (and keeps raising it)."""
        if self.stopped is not None:
            raise self.stopped
        try:
            self._send(message)
            return self._answer()
        except Stopped as stop:
            self.stopped = stop
            raise

    def drain(self, seconds: float) -> None:
        """Read what is left of the output until its writers are gone (or `seconds` pass)."""
        end = time.monotonic() + seconds
        while self._output_open and (remaining := end - time.monotonic()) > 0:
            if select.select([self.output_fd], [], [], remaining)[0]:
                self._read_output()

    @property
    def output(self) -> str:
        return self._output.decode("utf-8", errors="replace")

    def _send(self, message: dict) -> None:
        payload = wire.frame(message)
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise Stopped("timeout")
        self.sock.settimeout(remaining)
        try:
            self.sock.sendall(payload)
        except TimeoutError:
            raise Stopped("timeout") from None
        except OSError:
            raise Stopped("died") from None

    def _answer(self) -> dict:
        while True:
            try:
                message = self._reader.next()
            except wire.ProtocolError as exc:
                raise Stopped("protocol", str(exc)) from None
            if message is not None:
                if type(message) is not dict:
                    raise Stopped("protocol", f"an answer that is not an object: {str(message)[:80]}")
                return message
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise Stopped("timeout")
            readable = select.select([self.sock, *([self.output_fd] if self._output_open else [])], [], [],
                                     remaining)[0]
            if self.output_fd in readable:
                self._read_output()
            if self.sock in readable:
                chunk = self._receive()
                if not chunk:
                    raise Stopped("died")
                self._reader.feed(chunk)

    def _receive(self) -> bytes:
        """One chunk from the socket select found readable; empty when the child has gone."""
        self.sock.settimeout(max(0.001, self.deadline - time.monotonic()))
        try:
            return self.sock.recv(1 << 16)
        except TimeoutError:
            raise Stopped("timeout") from None
        except OSError:
            return b""

    def _read_output(self) -> None:
        chunk = os.read(self.output_fd, 1 << 16)
        if not chunk:
            self._output_open = False
        elif len(self._output) < OUTPUT_LIMIT:
            self._output += chunk[: OUTPUT_LIMIT - len(self._output)]


class _Candidate:
    """Stands in, in the tests' namespace, for one function the program defined."""

    def __init__(self, channel: Channel, name: str) -> None:
        self._channel, self.__name__ = channel, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            message = {"call": self.__name__, "args": wire.encode(list(args)), "kwargs": wire.encode(kwargs)}
        except wire.Unpassable as exc:
            raise TypeError(f"{self.__name__}(...): an argument is not plain data ({exc})") from None
        answer = self._channel.request(message)
        if "returned" in answer:
            try:
                return wire.decode(answer["returned"])
            except wire.ProtocolError as exc:
                self._channel.stopped = Stopped("protocol", str(exc))
                raise self._channel.stopped from None
        raise _exception(answer)

    def __repr__(self) -> str:
        return f"<sandboxed function {self.__name__}>"


def _exception(answer: dict) -> BaseException:
    """The program's exception, re-raised here as the builtin class of the same name where there is one."""
    try:
        name, detail = (str(part)[:wire.DETAIL_LIMIT] for part in answer["raised"])
    except (KeyError, TypeError, ValueError):
        return Stopped("protocol", f"an answer that is neither a value nor an exception: {str(answer)[:80]}")
    kind = getattr(builtins, name, None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        try:
            return kind(f"{detail.removeprefix(name + ': ')} (raised in the program)")
        except TypeError:  # a builtin with a constructor of its own (UnicodeDecodeError)
            pass
    return CandidateError(detail)


def judge(channel: Channel, program: str, test_code: str) -> tuple[str, str]:
    """Send the program, then run the tests here; (status, detail), or `Stopped` from the channel."""
    report = channel.request({"program": program})
    if "defined" not in report:  # the program itself raised: its own description is the detail
        error = _exception(report)
        if isinstance(error, Stopped):
            raise error
        name, detail = report["raised"]
        return ("memory" if name == "MemoryError" else "error"), str(detail)[:wire.DETAIL_LIMIT]
    namespace = {"__name__": "__tests__", "__builtins__": builtins, **_names(channel, report["defined"])}
    try:
        exec(wire.compile_source(test_code, "<tests>"), namespace)
        outcome = ("passed", "")
    except AssertionError as exc:
        outcome = ("failed", wire.describe(exc, _TESTS))
    except MemoryError:
        outcome = ("memory", "MemoryError")
    except Stopped:
        raise
    except Exception as exc:
        outcome = ("error", wire.describe(exc, _TESTS))
    if channel.stopped is not None:  # the tests caught it: what stopped the child still decides
        raise channel.stopped
    return outcome


def _names(channel: Channel, defined: Any) -> dict[str, Any]:
    """The tests' view of what the program defined: a `_Candidate` per function, copies of plain values."""
    if type(defined) is not dict:
        raise Stopped("protocol", "the program's definitions are not an object")
    names: dict[str, Any] = {}
    for name, entry in defined.items():
        if not name.isidentifier() or name in _BUILTIN_NAMES:  # a program's `isinstance` must not judge
            continue
        if entry == "callable":
            names[name] = _Candidate(channel, name)
        elif type(entry) is dict and "value" in entry:
            try:
                names[name] = wire.decode(entry["value"])
            except wire.ProtocolError as exc:
                raise Stopped("protocol", str(exc)) from None
    return names
