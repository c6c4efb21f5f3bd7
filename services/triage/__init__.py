"""Triage: turns alerts into incidents (correlation, severity, recurrence).

Reads `alert.received` and the incident lifecycle topics; emits
`incident.opened`, `incident.classified` and `incident.updated`. `main.py`
builds the service, `handlers.py` adapts messages, `correlation.py`,
`severity.py` and `projection.py` decide, without Kafka.
"""
