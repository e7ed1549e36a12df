"""A closed-loop HTTP/1.1 load generator, run in a process of its own.

`run(spec)` starts `python -m tests.benchmarks.loadgen`, hands it the spec as JSON on stdin and
reads the result as JSON from its stdout. In that process `clients` asyncio tasks each keep one
keep-alive connection and send a request, wait for the whole answer, and send the next, for
`warmup` seconds not counted and then `seconds` counted. The client is a few lines over asyncio
streams rather than httpx so that the generator spends little of the shared CPU per request.

A spec's requests are raw: method, path, headers, body. Client k sends `requests[k % len]`.
With `chain`, client k starts from `chain.seeds[k]` and after each 2xx answer takes the JSON
member `chain.field` of the answer as the next value: this is how refresh tokens, which are
single-use, are rotated; the result's `chain_values` are where the chains stopped.
`{value}` in the body (or a header) is replaced by the current value.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any


def run(spec: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Run one load in a new process; its result (count, rate, statuses, latencies)."""
    limit = timeout or spec["warmup"] + spec["seconds"] + 60
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.loadgen"],
        input=json.dumps(spec).encode(),
        capture_output=True,
        timeout=limit,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed: {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readuntil(b"\r\n")  # the empty trailer
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _raw(request: dict[str, Any], host: str, value: str | None) -> bytes:
    body = request.get("body") or ""
    headers = dict(request.get("headers") or {})
    if value is not None:
        body = body.replace("{value}", value)
        headers = {k: v.replace("{value}", value) for k, v in headers.items()}
    data = body.encode()
    lines = [f"{request['method']} {request['path']} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {text}" for name, text in headers.items()]
    if data or request["method"] != "GET":
        lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    host, port = spec.get("host", "127.0.0.1"), int(spec["port"])
    requests: list[dict[str, Any]] = spec["requests"]
    chain: dict[str, Any] | None = spec.get("chain")
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    start = time.perf_counter()
    measure_from = start + float(spec.get("warmup", 1.0))
    stop_at = measure_from + float(spec["seconds"])
    last: dict[int, str | None] = {}

    async def client(k: int) -> None:
        connection = _Connection(host, port)
        request = requests[k % len(requests)]
        value: str | None = chain["seeds"][k % len(chain["seeds"])] if chain else None
        while (now := time.perf_counter()) < stop_at:
            try:
                status, body = await connection.send(_raw(request, f"{host}:{port}", value))
            except (OSError, asyncio.IncompleteReadError) as failure:
                await connection.close()
                if now >= measure_from:
                    failures[type(failure).__name__] += 1
                continue
            done = time.perf_counter()
            if chain and 200 <= status < 300:
                value = json.loads(body)[chain["field"]]
            if now >= measure_from and done <= stop_at:
                latencies.append(done - now)
                statuses[status] += 1
        await connection.close()
        last[k] = value

    await asyncio.gather(*(client(k) for k in range(int(spec["clients"]))))
    latencies.sort()
    window = float(spec["seconds"])
    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return {
        "clients": spec["clients"],
        "seconds": window,
        "count": len(latencies),
        "ok": ok,
        "rate": ok / window,
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "failures": dict(failures),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else 0.0,
        # Where each chain stopped: the value client k would have sent next.
        "chain_values": [last[k] for k in sorted(last)] if chain else [],
    }


def main() -> None:
    """Read a spec from stdin, run it, write the result to stdout."""
    spec = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(_load(spec))))


if __name__ == "__main__":
    main()
