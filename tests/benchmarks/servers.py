"""The servers the HTTP benchmarks measure, each run by uvicorn in a process of its own.

    python -m tests.benchmarks.servers broker --port P        # settings from BROKER_* variables
    python -m tests.benchmarks.servers source --port P --broker URL
    python -m tests.benchmarks.servers passthrough --port P --target URL

All three are served alike: one uvicorn process, loopback, the asyncio loop and h11 that come
with plain `uvicorn`, no access log. `Process` starts one from the benchmark and waits for it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

ROOT = Path(__file__).resolve().parents[2]
UVICORN = {"host": "127.0.0.1", "log_level": "warning", "access_log": False}


def passthrough_app(target: str) -> FastAPI:
    """Forwards GET /fhir/... with its query and Authorization header to `target`; no checks."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    client = httpx.AsyncClient(base_url=target.rstrip("/"), timeout=30)

    @app.get("/fhir/{path:path}")
    async def forward(path: str, request: Request) -> Response:
        answer = await client.get(
            f"/fhir/{path}",
            params=request.query_params,
            headers={"authorization": request.headers.get("authorization", "")},
        )
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type"),
        )

    return app


class Process:
    """One server process on loopback; `start` waits until `ready_path` answers."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        port: int,
        *,
        env: Mapping[str, str] | None = None,
        ready_path: str = "/",
    ) -> None:
        self.name = name
        self.args = list(args)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, **(env or {})}
        self.ready_path = ready_path
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id; only once started."""
        assert self.popen is not None
        return self.popen.pid

    def start(self, timeout: float = 60) -> Process:
        """Start and wait until it answers HTTP; RuntimeError if it exits or times out."""
        self.popen = subprocess.Popen(self.args, cwd=ROOT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}")
            try:
                httpx.get(self.url + self.ready_path, timeout=2)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited after 15 s."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far, from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        """The process's resident set size now, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for {self.name}")


def module_args(*args: str) -> list[str]:
    """The command line that runs this module with `args`."""
    return [sys.executable, "-m", "tests.benchmarks.servers", *args]


def main(argv: Sequence[str] | None = None) -> None:
    """Serve one of the three apps until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("kind", choices=["broker", "source", "passthrough"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--broker", help="the broker's URL (source)")
    parser.add_argument("--target", help="the source's URL (passthrough)")
    args = parser.parse_args(argv)
    if args.kind == "broker":
        from broker.api import create_app
        from broker.settings import Settings

        app = create_app(Settings())
    elif args.kind == "source":
        from broker.demo.sources import fhir

        broker = str(args.broker).rstrip("/")
        app = fhir.create_app(broker, fhir.AUDIENCE, f"{broker}/.well-known/jwks.json")
    else:
        app = passthrough_app(str(args.target))
    uvicorn.run(app, port=args.port, **UVICORN)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
