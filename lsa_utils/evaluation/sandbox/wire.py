"""What both sides of the sandbox share: framed JSON messages, plain values, and how errors are described.

Both sides import this module: the evaluator (through the package) and the server inside the sandbox
(from its own folder, standard library only). Values cross as tagged JSON built from exact builtin
types only, and come out as fresh builtin objects: code under test cannot hand the evaluator an object
with its own ``__eq__``, an ``int`` subclass that equals everything, or anything that runs on arrival.

    >>> decode(encode({"a": (1, 2.5, None), "b": {b"x"}}))
    {'a': (1, 2.5, None), 'b': {b'x'}}
"""

import json
import linecache
import socket
import struct
import traceback
from typing import Any

DETAIL_LIMIT = 4000  # characters of an exception's description
MAX_FRAME = 16 * 1024 * 1024  # bytes; a bigger message is a protocol error, not a reason to allocate
_HEADER = struct.Struct(">I")
_TAGS = {tuple: "t", set: "s", frozenset: "fs"}


class ProtocolError(Exception):
    """A message that is not one this protocol sends: the sender is broken or hostile."""


class Unpassable(TypeError):
    """A value that is not plain data (a generator, an instance of the program's own class, ...)."""


def encode(value: Any) -> Any:
    """``value`` as JSON-ready data; raises `Unpassable` for anything but (nested) exact builtin types."""
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return {"f": value.hex()}  # exact, and inf / nan survive
    if kind is list:
        return [encode(item) for item in value]
    if kind in _TAGS:
        return {_TAGS[kind]: [encode(item) for item in value]}
    if kind is dict:
        return {"d": [[encode(k), encode(v)] for k, v in value.items()]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is complex:
        return {"c": [value.real.hex(), value.imag.hex()]}
    raise Unpassable(f"a {kind.__name__} is not plain data and cannot leave the sandbox")


def decode(data: Any) -> Any:
    """The value `encode` made ``data`` from; raises `ProtocolError` for anything `encode` does not make."""
    if data is None or type(data) in (bool, int, str):
        return data
    if type(data) is list:
        return [decode(item) for item in data]
    if type(data) is not dict or len(data) != 1:
        raise ProtocolError(f"not an encoded value: {str(data)[:80]}")
    (tag, payload), = data.items()
    try:
        if tag == "f":
            return float.fromhex(payload)
        if tag == "b":
            return bytes.fromhex(payload)
        if tag == "c":
            return complex(float.fromhex(payload[0]), float.fromhex(payload[1]))
        if tag == "d":
            return {decode(k): decode(v) for k, v in payload}
        kind = {code: kind for kind, code in _TAGS.items()}[tag]
        return kind(decode(item) for item in payload)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ProtocolError(f"not an encoded value: {str(data)[:80]}") from exc


def frame(message: Any) -> bytes:
    """One message as bytes on a stream: a 4-byte length, then UTF-8 JSON."""
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_FRAME:
        raise Unpassable(f"a message of {len(body)} bytes is over the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(body)) + body


class FrameReader:
    """Collects bytes from a stream and cuts them into messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk

    def next(self) -> Any | None:
        """The next complete message, or None until more bytes arrive."""
        if len(self._buffer) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(self._buffer)
        if size > MAX_FRAME:
            raise ProtocolError(f"a frame of {size} bytes is over the {MAX_FRAME}-byte limit")
        if len(self._buffer) < _HEADER.size + size:
            return None
        body = bytes(self._buffer[_HEADER.size:_HEADER.size + size])
        del self._buffer[:_HEADER.size + size]
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(f"a frame that is not JSON: {body[:80]!r}") from exc


def send(sock: socket.socket, message: Any) -> None:
    sock.sendall(frame(message))


def receive(sock: socket.socket, reader: FrameReader) -> Any | None:
    """Block until the next message; None when the other side has closed."""
    while (message := reader.next()) is None:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return None
        reader.feed(chunk)
    return message


def describe(exc: BaseException, filenames: tuple[str, ...]) -> str:
    """One-line summary of an exception with the line it came from in one of `filenames`."""
    try:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in filenames]
        if frames:
            text += f" [{frames[-1].filename} line {frames[-1].lineno}: {frames[-1].line}]"
    except BaseException:  # a hostile __str__ must not stop the answer
        text = type(exc).__name__
    return text[:DETAIL_LIMIT]


def compile_source(source: str, filename: str) -> Any:
    """Compile with the source registered in linecache, so tracebacks can quote the failing line."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec")
