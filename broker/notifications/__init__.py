"""Telling consumers that a consent ended: a durable outbox, signed webhooks, and expiry.

- `outbox`: rows written in the transaction of the consent change; claiming due rows (with
  `FOR UPDATE SKIP LOCKED`, so several broker processes share the work), marking the outcome,
  and the retry schedule.
- `sender`: the signed notification (a compact JWS with the broker's `notify` key) and its POST.
- `worker`: the `Notifier`, the background loop the runtime starts: delivers due rows and marks
  consents past their `valid_until` expired.

This package's `__init__` imports nothing, so that `broker.consents` can use the outbox without
pulling in the worker (which itself uses `broker.consents`).
"""
