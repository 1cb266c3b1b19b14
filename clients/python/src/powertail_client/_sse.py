"""A `text/event-stream` parser (the WHATWG HTML "event stream interpretation")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Optional


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event: ``event`` (``"message"`` when the stream named none),
    ``data`` (its ``data:`` lines joined with ``\\n``), ``id`` (the last event id in force
    when it was dispatched, ``None`` if none was ever set) and ``retry`` (a ``retry:``
    field given with it, in milliseconds)."""

    event: str
    data: str
    id: Optional[str] = None
    retry: Optional[int] = None


class SSEDecoder:
    """Feed it lines without terminators (``iter_lines`` of an HTTP body); it yields the
    events that complete. ``last_event_id`` survives the events, as the specification
    wants for a reconnection's ``Last-Event-ID``."""

    def __init__(self, last_event_id: Optional[str] = None) -> None:
        self.last_event_id = last_event_id
        self.retry: Optional[int] = None
        self._event = ""
        self._data: List[str] = []
        self._has_data = False
        self._retry: Optional[int] = None

    def feed(self, line: str) -> Optional[ServerSentEvent]:
        """One line; the event it dispatches (a blank line ends an event), if any."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the heartbeat
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
            self._has_data = True
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry":
            if value.isascii() and value.isdigit():
                self.retry = self._retry = int(value)
        return None

    def _dispatch(self) -> Optional[ServerSentEvent]:
        event, data, has_data, retry = self._event, self._data, self._has_data, self._retry
        self._event, self._data, self._has_data, self._retry = "", [], False, None
        if not has_data:
            return None
        return ServerSentEvent(event or "message", "\n".join(data), self.last_event_id, retry)

    def iter_events(self, lines: Iterable[str]) -> Iterator[ServerSentEvent]:
        """The events of `lines`; an event the stream did not finish is dropped."""
        for line in lines:
            # httpx's iter_lines strips the terminators; be lenient with a stray one.
            event = self.feed(line.rstrip("\r\n"))
            if event is not None:
                yield event
