"""`geocache status`: a node's state at a glance, from INFO."""

from __future__ import annotations

import ssl

from rich.console import Console
from rich.table import Table

from geocache.client.connection import Connection, ReplyError


def parse_info(text: str) -> dict[str, dict[str, str]]:
    """INFO text as {section: {field: value}}."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# "):
            current = sections.setdefault(line[2:].strip().lower(), {})
        elif ":" in line:
            field, _, value = line.partition(":")
            current[field] = value
    return sections


def fetch_info(
    host: str, port: int, password: str | None = None, tls: ssl.SSLContext | None = None
) -> dict[str, dict[str, str]]:
    with Connection(host, port, tls=tls) as conn:
        if password:
            conn.execute("AUTH", password)
        raw = conn.execute("INFO", "all")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return parse_info(text)


def run_status(
    host: str, port: int, password: str | None, tls: ssl.SSLContext | None = None
) -> int:
    console = Console()
    try:
        info = fetch_info(host, port, password, tls)
    except (OSError, ReplyError) as exc:
        console.print(f"[red]cannot read {host}:{port}: {exc}[/red]")
        return 1
    table = Table(title=f"geocache node {host}:{port}")
    table.add_column("section")
    table.add_column("field")
    table.add_column("value", justify="right")
    for section in ("geocache", "clients", "memory", "stats"):
        for field, value in info.get(section, {}).items():
            table.add_row(section, field, value)
    console.print(table)
    return 0
