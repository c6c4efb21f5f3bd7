"""A world to act on: a small simulated production system for the demo and end-to-end tests.

`python -m demo.world` starts a supervisor (`demo.world.supervisor`) that runs
every service of `demo/config/catalog.yaml` as its own OS process
(`demo.world.service`): storefront -> checkout -> payments, storefront ->
catalog, reporting -> payments. Each service is a real HTTP server with real
Prometheus metrics and JSON logs, so the incident system's investigator reads
it like production, and its executor acts on it for real: restart a process,
roll back a deploy, flush the Redis cache, change a log level.

Faults (`POST /faults/{kind}`) break it the way production breaks: a bad
deploy, an error spike, a stuck cache, a crash, a connection leak. Recovery
is observable, never declared: `GET /status` reports each service's error
rate over a sliding window of its own traffic, fed by a built-in traffic
generator, and `demo.alerter` turns it into Alertmanager webhooks.

Modules: `supervisor` (processes, history, faults, control API), `service`
(one service process), `stats` (sliding-window rates from scraped counters),
`traffic` (synthetic users), `logs` (JSON log lines), `scenario` (versions,
seeded history, error messages). The async client is `demo.client`.
"""
