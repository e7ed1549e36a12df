"""What the broker tells its operators: Prometheus metrics and structured logs."""
