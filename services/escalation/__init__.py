"""Escalation service: pages the right people, escalates on time, keeps stakeholders posted.

Reads top-down: `main` builds, `handlers` wires the bus, `flow` carries out what
`decisions` finds due for an incident whose state `state` projects from events;
`schedule` answers who is on call, `policy` holds DOMAIN.md's thresholds,
`messages` derives ids and renders texts, `notifiers/` deliver (one module per
channel), `api` offers read-only views, `testing` runs drills in memory.
"""
