"""Events as the frames a reader receives, for live delivery and replay alike.

Owns what a frame carries: a message event is rendered as a reader of one language sees it, once
per language and encoded once (the same bytes for every connection of that language); any other
event goes out as emitted, except that a delete never carries the deleted text. It only reads.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rosetta.realtime.audience import Audiences, Readers
from rosetta.realtime.wire import Frame, dumps
from rosetta.services.events import RENDERED, Event
from rosetta.services.views import same_language
from rosetta.store import messages as message_store
from rosetta.store.connections import Conn

if TYPE_CHECKING:
    from rosetta.services.messages import MessageService

# Keys that hold message text: stripped from every *.deleted event (delete events carry no content).
CONTENT_KEYS = ("content", "original_content", "display_content", "translations", "attachments")


def neutral_data(name: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Non-message events go out as emitted; a delete never carries the deleted text."""
    if name.endswith(".deleted"):
        return {key: value for key, value in payload.items() if key not in CONTENT_KEYS}
    return payload


def target_language(event: Event) -> str:
    """The language a ``message.translated`` event is for (only its readers get it)."""
    return str(event.payload.get("language") or "")


def event_of(row: Any) -> Event:
    """An event as read back from the log."""
    return Event(row["seq"], row["name"], row["audience_kind"], row["audience_id"], json.loads(row["payload"]),
                 row["created_at"])


async def message_rows(conn: Conn, events: list[Event]) -> dict[str, Any]:
    """The messages that ``events`` render, by id, in one query (purged ones are missing)."""
    ids = list({e.payload.get("id") for e in events if e.name in RENDERED and e.payload.get("id")})
    return {row["id"]: row for row in await message_store.by_ids(conn, ids)}


async def render_all(messages: MessageService | None, conn: Conn,
                     wanted: dict[str, dict[str, Any]]) -> dict[tuple[str, str], bytes]:
    """Each wanted message as a reader of each language sees it, encoded: one render per language."""
    assert messages is not None
    encoded: dict[tuple[str, str], bytes] = {}
    for language, by_id in wanted.items():
        for data in await messages.render(conn, list(by_id.values()), language):
            encoded[language, data["id"]] = dumps(data)
    return encoded


async def frames_for(audiences: Audiences, messages: MessageService | None, conn: Conn, user_id: str,
                     events: list[Event], cache: dict[tuple[str, str], Readers]) -> list[Frame]:
    """The events of one page that ``user_id`` may see, as that reader sees them, in seq order (replay)."""
    visible: list[tuple[Event, str]] = []
    for event in events:
        readers = await audiences.readers(conn, event.audience_kind, event.audience_id, cache)
        language = readers.get(user_id)
        if language is None:
            continue
        if event.name == "message.translated" and not same_language(language, target_language(event)):
            continue
        visible.append((event, language))
    rows = await message_rows(conn, [event for event, _ in visible])
    wanted: dict[str, dict[str, Any]] = {}
    for event, language in visible:
        row = rows.get(event.payload.get("id")) if event.name in RENDERED else None
        if row is not None:
            wanted.setdefault(language, {})[row["id"]] = row
    rendered = await render_all(messages, conn, wanted)
    frames = []
    for event, language in visible:
        if event.name not in RENDERED:
            frames.append(Frame(event.seq, event.name, dumps(neutral_data(event.name, event.payload))))
        elif (language, event.payload.get("id")) in rendered:
            frames.append(Frame(event.seq, event.name, rendered[language, event.payload["id"]]))
    return frames
