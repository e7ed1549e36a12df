"""Token issuance at the broker's /oauth/token against the `oidc-provider` npm package on Node.

    python -m tests.benchmarks.bench_tokens [--write] [--seconds 10] [--clients 1 8 64]

Two grants, each with client_secret_basic and JWT access tokens signed with Ed25519 on both
sides: client_credentials, and refresh_token with rotation (each client of the load generator
owns one refresh-token family and sends, each time, the refresh token of the last answer).
oidc-provider (version pinned in tests/benchmarks/oidc_provider/package.json) is installed with
npm into var/bench/oidc at the first run and served by tests/benchmarks/oidc_provider/server.mjs.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from broker.auth.secrets import new_secret, secret_hash
from broker.demo.stack import free_port
from broker.oauth.grants import store_refresh_token
from broker.storage import transaction
from broker.storage.tables import RefreshToken
from tests.benchmarks import loadgen, profiling, report
from tests.benchmarks.deployment import Deployment, deployed

HERE = Path(__file__).resolve().parent / "oidc_provider"
NODE_DIR = Path(__file__).resolve().parents[2] / "var" / "bench" / "oidc"
PERSON = "aino-virtanen"


def install_oidc_provider() -> Path:
    """npm install the pinned oidc-provider into var/bench/oidc (once); the directory."""
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    package = (HERE / "package.json").read_text(encoding="utf-8")
    installed = NODE_DIR / "package.json"
    if not (NODE_DIR / "node_modules" / "oidc-provider").exists() or (
        not installed.exists() or installed.read_text(encoding="utf-8") != package
    ):
        installed.write_text(package, encoding="utf-8")
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR, check=True
        )
    # ESM resolves `oidc-provider` from the script's own directory, so the script goes beside it.
    shutil.copy(HERE / "server.mjs", NODE_DIR / "server.mjs")
    return NODE_DIR


class OidcProvider:
    """oidc-provider on Node on a free port, with `seeds` refresh tokens made at start."""

    def __init__(self, seeds: int) -> None:
        self.port = free_port()
        directory = install_oidc_provider()
        self.popen = subprocess.Popen(
            ["node", "server.mjs", str(self.port), str(seeds)],
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # its warnings: Node 20, and the in-memory adapter
        )
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            raise RuntimeError("oidc-provider did not start")
        started = json.loads(line)
        self.client_id: str = started["client_id"]
        self.client_secret: str = started["client_secret"]
        self.refresh_tokens: list[str] = started["refresh_tokens"]
        self.version = json.loads(
            (directory / "node_modules" / "oidc-provider" / "package.json").read_text()
        )["version"]

    def stop(self) -> None:
        """Terminate the Node process."""
        self.popen.terminate()
        self.popen.wait(15)


def broker_refresh_tokens(deployment: Deployment, count: int) -> list[str]:
    """`count` refresh tokens of the self-care app for Aino's consent, each its own family.

    One comes from the consent flow over HTTP; the others are stored beside it with the same
    grant (client, person, scope, details, consents), as the refresh grant would store them.
    """
    first = deployment.consent(PERSON)["refresh_token"]
    now = datetime.now(UTC)
    tokens = [first]
    with transaction(deployment.engine) as session:
        row = session.get(RefreshToken, secret_hash(first))
        assert row is not None
        for _ in range(count - 1):
            tokens.append(
                store_refresh_token(
                    session,
                    family_id=new_secret(),
                    client_id=row.client_id,
                    person_id=row.person_id,
                    scope=row.scope,
                    details=list(row.authorization_details),
                    consent_ids=list(row.consent_ids),
                    jkt=None,
                    now=now,
                    lifetime=timedelta(days=30),
                )
            )
    return tokens


def token_load(
    port: int,
    path: str,
    client: tuple[str, str],
    clients: int,
    seconds: float,
    grant: str,
    refresh_tokens: Sequence[str] = (),
) -> dict[str, Any]:
    """The load generator's spec for one grant at a token endpoint (client_secret_basic)."""
    basic = base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()
    headers = {
        "Authorization": f"Basic {basic}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    spec: dict[str, Any] = {
        "port": port,
        "clients": clients,
        "seconds": seconds,
        "warmup": min(1.0, seconds / 2),
        "requests": [{"method": "POST", "path": path, "headers": headers}],
    }
    if grant == "client_credentials":
        spec["requests"][0]["body"] = "grant_type=client_credentials"
    else:
        spec["requests"][0]["body"] = "grant_type=refresh_token&refresh_token={value}"
        spec["chain"] = {"field": "refresh_token", "seeds": list(refresh_tokens)}
    return spec


HEADER = [
    "Grant",
    "Database",
    "Clients",
    "oidc-provider req/s",
    "p50 ms",
    "p99 ms",
    "Broker req/s",
    "p50 ms",
    "p99 ms",
    "Broker/oidc-provider throughput",
    "Errors",
    "Target",
]


def _errors(result: dict[str, Any]) -> int:
    bad = sum(n for s, n in result["statuses"].items() if not s.startswith("2"))
    return bad + sum(result["failures"].values())


def _cells(row: dict[str, Any]) -> list[str]:
    theirs, ours = row["theirs"], row["ours"]
    ratio = ours["rate"] / theirs["rate"] if theirs["rate"] else 0.0
    return [
        row["grant"],
        row["database"],
        str(row["clients"]),
        f"{theirs['rate']:,.0f}",
        f"{theirs['p50_ms']:.1f}",
        f"{theirs['p99_ms']:.1f}",
        f"{ours['rate']:,.0f}",
        f"{ours['p50_ms']:.1f}",
        f"{ours['p99_ms']:.1f}",
        f"{ratio:.2f}x",
        f"{_errors(ours)} / {_errors(theirs)}",
        "met" if ratio >= 1.0 else "**not met**",
    ]


# What the broker's Python time is spent on at its token endpoint (labels: frames they match).
PROFILE_FRAMES = {
    "the token endpoint (`routers/oauth.py` `_serve`)": ";_serve (broker/api/routers/oauth.py",
    "client authentication (client looked up in the database, secret hash compared)": (
        ";ClientAuthentication.__call__ ("
    ),
    "refresh token checked and rotated (`RefreshTokenGrant`)": ";RefreshTokenGrant.",
    "consents behind the grant checked (`get_consent`)": ";get_consent (broker/consents",
    "access token signed (`issue_access_token`)": ";issue_access_token (",
    "COMMIT and flush (SQLAlchemy)": ";SessionTransaction.commit (",
    "ASGI middleware, routing, FastAPI (everything outside the endpoint)": ";Starlette.__call__ (",
    "uvicorn's event loop (HTTP parsing, the thread pool hand-off)": ";BaseEventLoop._run_once (",
    "SQLAlchemy (all queries and commits, anywhere)": "sqlalchemy/",
}


def bench_database(
    name: str,
    database: str,
    clients: Sequence[int],
    seconds: float,
    node: OidcProvider,
    *,
    profile: bool = False,
) -> list[dict[str, Any]]:
    """Both grants at each level against both servers, taking turns; one row per cell.

    With `profile`, one more run of each grant with 8 clients is sampled with py-spy."""
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp,
        deployed(Path(tmp), database) as deployment,
    ):
        consumer = (deployment.consumer.client_id, deployment.consumer.client_secret)
        ours_tokens = broker_refresh_tokens(deployment, max(clients))
        # The same Node server for every database: its chains go on where they stopped.
        theirs_tokens = node.refresh_tokens
        for grant in ("client_credentials", "refresh_token"):
            for level in clients:
                node_client = (node.client_id, node.client_secret)
                theirs = loadgen.run(
                    token_load(
                        node.port, "/token", node_client, level, seconds, grant, theirs_tokens
                    )
                )  # fmt: skip
                ours = loadgen.run(
                    token_load(
                        deployment.broker_port, "/oauth/token", consumer, level, seconds, grant,
                        ours_tokens,
                    )
                )  # fmt: skip
                row = {
                    "grant": grant,
                    "database": name,
                    "clients": level,
                    "ours": ours,
                    "theirs": theirs,
                }
                rows.append(row)
                report.print_table(HEADER, [_cells(row)])
                if grant == "refresh_token":
                    # The used tokens are spent: each chain goes on from where it stopped.
                    ours_tokens[:level] = ours["chain_values"]
                    theirs_tokens[:level] = theirs["chain_values"]
        if profile:
            for grant in ("client_credentials", "refresh_token"):
                shares = profiling.during(
                    deployment.broker.pid,
                    lambda grant=grant, seeds=ours_tokens: loadgen.run(
                        token_load(
                            deployment.broker_port, "/oauth/token", consumer, 8, seconds, grant,
                            seeds,
                        )
                    ),
                    seconds,
                    Path(tmp) / f"{grant}.folded",
                    PROFILE_FRAMES,
                )  # fmt: skip
                rows[-1].setdefault("profile", {})[grant] = shares
                print(f"  profile of {grant}:")
                for line in profiling.lines(shares):
                    print(f"    {line}")
                if grant == "refresh_token":
                    ours_tokens = broker_refresh_tokens(deployment, max(clients))
    return rows


INTRO = """\
## Token issuance against oidc-provider

Written by `tests/benchmarks/bench_tokens.py`. `POST /oauth/token` at the broker against the
token endpoint of [`oidc-provider`](https://www.npmjs.com/package/oidc-provider) {version} on
Node {node} (`tests/benchmarks/oidc_provider/`: `package.json` pins the version, `server.mjs`
is our configuration). Both: one process (uvicorn for the broker; Node's own HTTP server),
loopback, client authentication `client_secret_basic`, **JWT access tokens** (RFC 9068
`at+jwt`) signed with Ed25519 (the broker's `Ed25519`, oidc-provider's `EdDSA` through its
resource-indicators feature), refresh tokens **rotated** on every use, a reused one refused.

- *client_credentials*: the consumer client asks for a token for itself. The broker looks the
  client up in its database and checks the secret's SHA-256; oidc-provider holds its one
  client in memory.
- *refresh_token*: each client of the load generator owns one refresh-token family and always
  sends the refresh token of its last answer. The broker's tokens come from one consent flow
  over HTTP (Aino approves the self-care app) and are copied into new families in the
  database as the grant stores them, so each carries the consent and its
  `authorization_details`; on each use the broker checks that the consent is still active,
  rotates the token in the database (committed before answering) and signs an access token
  naming the consent. oidc-provider's are pre-seeded at start through its own models (a
  `Grant` with `offline_access` and the resource's scope, then a `RefreshToken` bound to it),
  which is what its authorization code flow stores; its sign-in and consent pages are not run.
  It keeps grants and tokens in its development in-memory adapter, so its side writes nothing
  durable: that difference is in the figures.

The broker runs on SQLite and, when BROKER_TEST_POSTGRES_URL is set, on PostgreSQL;
oidc-provider is the same server for both. Same load generator as the release benchmark
(closed loop, own process, warm-up then a fixed time per cell); the two servers take turns.
Target: the broker at least equal (throughput ratio >= 1.00). *Errors* counts non-2xx answers
and broken connections, broker / oidc-provider.
"""


ANALYSIS = """\
### Why the broker is behind

*client_credentials*: oidc-provider keeps its one client in memory and answers from Node's HTTP
stack, compiled by V8. The broker keeps client records for 2 s, compares the secret's SHA-256
in constant time and signs with Ed25519, but most of a request is CPython running uvicorn's
HTTP parsing, the ASGI middleware (request id, an access log line and the latency histogram;
security headers; body limit; rate limiting, set to no limit here), FastAPI and Authlib (`--profile`
samples it with py-spy): about a millisecond of CPU per request on this machine, with no one piece
dominating, against a fifth of that for Node.

*refresh_token*: for each refresh the broker checks that every consent behind the grant is
still active, rotates the token in the database (the used one marked, the new one stored; a
reused one revokes its family) and COMMITs before it answers (on SQLite with
`synchronous=FULL`, an fsync), while oidc-provider keeps grants and tokens in a `Map` (its
development adapter; our `MapAdapter` is that without the LRU eviction) and writes nothing
durable. Refreshes run as units of the log's group-committing writer, so concurrent refreshes
share one COMMIT; what remains per refresh is the Python work of the checks and the rotation.

What would narrow it, not done here: a token endpoint outside the FastAPI middleware stack;
several broker workers on PostgreSQL on a machine with more cores (oidc-provider here is one
Node process, so that would not be like for like on two cores); and, for a like-for-like
comparison of durability, oidc-provider with a durable adapter.
"""

PROFILE_TEXT = """\
Profile of {grant} ({database}, 8 clients, {s:g} s, `--profile`): py-spy sampled the broker
process while only the thread holding the interpreter lock runs Python, so a share is of the
Python work of a process that can run Python on one core at a time; inclusive, overlapping."""


def write(
    rows: list[dict[str, Any]],
    machine: dict[str, str],
    seconds: float,
    versions: dict[str, str],
    notes: list[str],
) -> None:
    """The tokens section of docs/performance.md."""
    lines = [INTRO.format(**versions), f"Each cell: {seconds:g} s measured after a warm-up.", ""]
    lines += report.table(HEADER, [_cells(row) for row in rows], right=2)
    lines += ["", ANALYSIS]
    if notes:
        lines += ["", "Notes from the run:", "", *[f"- {note}" for note in notes]]
    for row in rows:
        for grant, found in row.get("profile", {}).items():
            lines += ["", PROFILE_TEXT.format(grant=grant, database=row["database"], s=seconds), ""]
            lines += report.profile_table(found)
    lines += report.footer(
        machine, "bench_tokens", "`BENCH_SECONDS=2` for a short run; needs `node` and `npm`"
    )
    report.write_section("tokens", "\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    """Run both grants against both servers; print, and with --write record."""
    args = report.load_parser(__doc__, "tokens").parse_args(argv)
    machine = report.machine_info()
    machine["load average at start"] = report.load_average()
    node_version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    databases = report.databases(args.sqlite_only)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    node = OidcProvider(max(args.clients))
    try:
        for name, database in databases:
            rows += bench_database(
                name, database, args.clients, args.seconds, node, profile=args.profile
            )
    finally:
        node.stop()
    machine["node"] = node_version
    machine["oidc-provider"] = node.version
    machine["load average at end"] = report.load_average()
    machine["run time"] = f"{time.perf_counter() - started:.0f} s"
    print()
    report.print_table(HEADER, [_cells(row) for row in rows])
    if args.write:
        write(rows, machine, args.seconds, {"version": node.version, "node": node_version}, [])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
