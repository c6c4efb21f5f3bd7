"""``irctl broker``: run the embedded Kafka-protocol broker in the foreground.

Starts Tansu (persistent on SeaweedFS S3 under ``--state-dir`` by default, or in
memory with ``--memory``), creates every catalog topic (at most ``--max-partitions``
partitions each), prints the bootstrap address and waits. SIGINT and SIGTERM only
set a flag; the main thread then stops Tansu and the storage in order and exits 0,
so a supervisor (or a test) can tell a clean stop from a crash. The children run in
their own session: a Ctrl-C in the terminal does not hit them directly, only through
this orderly stop.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from shared.embedded import EMBEDDED_MAX_PARTITIONS


def broker(
    port: Annotated[int, typer.Option(help="Kafka listener port (0 = any free port).")] = 9092,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    memory: Annotated[
        bool, typer.Option("--memory", help="Throwaway in-memory storage (nothing persists).")
    ] = False,
    state_dir: Annotated[
        Path, typer.Option(help="Where the persistent storage and the logs live.")
    ] = Path(".state/broker"),
    topic_prefix: Annotated[str, typer.Option(help="Prefix of every created topic name.")] = "",
    max_partitions: Annotated[int, typer.Option(
        min=1, help="Cap on every topic's partition count (see shared/embedded.py).")
    ] = EMBEDDED_MAX_PARTITIONS,
) -> None:
    """Run the embedded Kafka-protocol broker (Tansu) with the catalog's topics until stopped."""
    from shared.embedded import BrokerError, EmbeddedBroker
    from shared.topics_admin import create_topics

    console = Console(soft_wrap=True)  # never wrap: scripts parse the bootstrap line
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    embedded = EmbeddedBroker(host=host, port=port, memory=memory, state_dir=state_dir)
    try:
        with console.status("starting broker..."):
            try:
                embedded.start()
            except BrokerError as exc:
                console.print("[red]broker failed to start:[/red]")
                console.print(str(exc), markup=False, highlight=False)
                raise typer.Exit(1) from exc
            created = asyncio.run(create_topics(embedded.bootstrap_servers, topic_prefix,
                                               max_partitions=max_partitions))
        storage = "memory (throwaway)" if memory else f"s3 on SeaweedFS in {embedded.state_dir}"
        console.print(
            f"[green]Kafka broker ready[/green] bootstrap_servers={embedded.bootstrap_servers}"
        )
        console.print(f"storage: {storage}; logs: {embedded.log_dir}")
        console.print(f"topics: {len(created)} created (prefix {topic_prefix!r}); Ctrl-C to stop")
        console.file.flush()
        while not stop.wait(0.5):
            if not embedded.running:
                console.print("[red]a broker process exited unexpectedly[/red]")
                console.print(embedded.log_tail(), markup=False, highlight=False)
                raise typer.Exit(1)
        console.print("stopping broker...")
    finally:
        embedded.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("broker stopped")
