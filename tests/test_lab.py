"""`make lab` starts JupyterLab (as root too), lists the project kernel and runs a notebook's cell on it.

The server is the one `make lab` starts, driven over its REST API and kernel websocket as a browser would.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator

import nbformat
import pytest
import websocket

from lsa_utils.infra.paths import NOTEBOOKS_DIR, REPO_ROOT

KERNEL = "lsa-study"
START_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[str, str]]:
    port, token = _free_port(), secrets.token_hex(16)
    options = f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --IdentityProvider.token={token}"
    server = subprocess.Popen(["make", "-s", "lab", f"LAB_OPTIONS={options}"], cwd=REPO_ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                _get(url, token, "/api/status")
                break
            except OSError:
                if server.poll() is not None:
                    pytest.fail(f"make lab exited {server.returncode}: {server.stderr.read()[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail("make lab did not answer within 2 minutes")
                time.sleep(1)
        yield url, token
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _get(url: str, token: str, path: str, data: dict | None = None) -> dict:
    request = urllib.request.Request(url + path, headers={"Authorization": f"token {token}"},
                                     data=json.dumps(data).encode() if data is not None else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_lab_lists_the_project_kernel_as_default(lab):
    specs = _get(*lab, "/api/kernelspecs")
    assert specs["default"] == KERNEL and KERNEL in specs["kernelspecs"]


def test_a_cell_of_notebook_01_runs_on_the_project_kernel(lab):
    url, token = lab
    notebook = nbformat.read(NOTEBOOKS_DIR / "01_semantic_bases.ipynb", as_version=4)
    parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    kernel = _get(url, token, "/api/kernels", {"name": KERNEL})
    assert kernel["name"] == KERNEL
    code = (parameters.source
            + "\nimport lsa_utils, sys\nprint(profile, lsa_utils.__name__, sys.prefix.endswith('.venv'))")
    assert _execute(url, token, kernel["id"], code) == "cpu lsa_utils True\n"


def _execute(url: str, token: str, kernel_id: str, code: str, timeout_s: float = 60) -> str:
    """Run ``code`` on a kernel through the server's websocket; its stdout (raises on an error reply)."""
    socket_url = url.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels?token={token}"
    connection = websocket.create_connection(socket_url, timeout=timeout_s)
    msg_id = uuid.uuid4().hex
    connection.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": uuid.uuid4().hex,
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    stdout, done = "", False
    try:
        while not done:
            message = json.loads(connection.recv())
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream" and content["name"] == "stdout":
                stdout += content["text"]
            elif kind == "error":
                raise AssertionError(f"{content['ename']}: {content['evalue']}")
            done = kind == "status" and content["execution_state"] == "idle"
    finally:
        connection.close()
    return stdout
