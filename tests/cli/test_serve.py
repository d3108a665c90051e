"""``stem-loop serve`` answers HTTP on a free port and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from stem_loop.storage import API_KEY_ENV, URI_ENV

STEM_LOOP = str(Path(sys.executable).with_name("stem-loop"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lines(stream) -> queue.Queue:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def test_serve_answers_http_then_stops(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in (URI_ENV, API_KEY_ENV)}
    process = subprocess.Popen(
        [STEM_LOOP, "serve", "--data", str(tmp_path), "--port", str(port), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines, printed = _lines(process.stdout), []
        while not printed or not printed[-1].startswith("{"):
            printed.append(lines.get(timeout=120))  # Raises queue.Empty if it never starts.
        info = json.loads(printed[-1])
        assert info["uri"] == f"http://127.0.0.1:{port}/api/v1"
        assert any("from tiled.client import from_uri" in line for line in printed)

        key = (tmp_path / "api_key").read_text().strip()
        # Separate clients: a request with ?api_key= sets a cookie that would authenticate the next.
        with httpx.Client(trust_env=False, timeout=10) as anonymous:
            assert anonymous.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            assert anonymous.get(info["runs_uri"]).status_code == 401
        with httpx.Client(trust_env=False, timeout=10) as user:
            assert user.get(info["runs_uri"], params={"api_key": key}).status_code == 200
            assert user.get(info["web_ui"]).status_code == 200
        assert (tmp_path / "tiled" / "server.json").exists()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert returncode == 0, process.stderr.read()
    assert not (tmp_path / "tiled" / "server.json").exists()
