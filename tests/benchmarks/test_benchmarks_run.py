"""The benchmarks still run: each of their parts for about a second, figures not checked.

`make bench` and `make soak` take half an hour; this keeps them from rotting unseen in CI.
The oidc-provider side of the token benchmark needs Node and npm and is left to `make bench`.
"""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks import bench_decisions, bench_release, bench_tokens, loadgen, soak
from tests.benchmarks.deployment import deployed


def _ok_only(result: dict[str, object]) -> None:
    statuses = result["statuses"]
    assert isinstance(statuses, dict)
    assert result["failures"] == {}, result
    assert set(statuses) <= {"200"}, result
    assert statuses.get("200", 0) > 0, result


def test_the_http_benchmarks_and_the_soak_run_against_a_live_broker(tmp_path: Path) -> None:
    with deployed(tmp_path, "sqlite") as deployment:
        token = deployment.consent(bench_release.PERSON)
        consent_id, fields = bench_release.release_once(deployment, token["access_token"])
        passthrough = bench_release.start_passthrough(deployment)
        try:
            minted = bench_release.source_token(deployment, consent_id, fields)
            _ok_only(
                bench_release.measure_cell(passthrough.port, bench_release.SEARCH, minted, 2, 1.0)
            )
        finally:
            passthrough.stop()
        path = f"/v1/data/{bench_release.CATEGORY}"
        _ok_only(
            bench_release.measure_cell(deployment.broker_port, path, token["access_token"], 2, 1.0)
        )

        client = (deployment.consumer.client_id, deployment.consumer.client_secret)
        seeds = bench_tokens.broker_refresh_tokens(deployment, 2)
        chains = loadgen.run(
            bench_tokens.token_load(
                deployment.broker_port, "/oauth/token", client, 2, 1.0, "refresh_token", seeds
            )
        )
        _ok_only(chains)
        assert len(chains["chain_values"]) == 2
        assert not set(chains["chain_values"]) & set(seeds), "the refresh tokens did not rotate"

        load = soak.Soak(deployment)
        try:
            load.join("karin-lindqvist")
            load.run(1.0, 20)
        finally:
            load.close()
        assert load.tally.errors == []
        assert load.tally.sent["release"] > 0
        assert len(load.tally.rss) >= 2


def test_the_decision_benchmark_loads_consents_and_finds_them_by_index(tmp_path: Path) -> None:
    row = bench_decisions.bench_database(
        "SQLite", f"sqlite:///{tmp_path / 'decisions.sqlite3'}", 2_000, 200
    )
    assert row["samples"] == 200
    assert row["permitted"] > 0
    # One statement: consents, their fields in the category, whether the agreement asks for it.
    assert len(row["plans"]) == 1
    # Each of its four tables is searched by key or index, none scanned.
    assert row["plans"][0].count("SEARCH") == 4, row["plans"]
    assert "SCAN" not in row["plans"][0], row["plans"]
