"""Benchmark harness: ingest, pipeline latency, alert storms and triage scale-out.

Every benchmark runs the real services as processes on the embedded broker
(`irctl.stack.Stack`), drives them from a *separate* load-generator process
(`bench.loadgen`) over HTTP with keep-alive, and reads the outcome back from
the event log. Each prints a rich summary to stderr and one JSON object as
the last line of stdout. See bench/README.md for the figures and flags.
"""
