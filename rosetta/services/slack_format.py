"""Slack/Mattermost incoming-webhook payloads rendered into one readable Markdown-ish message.

Pure functions, no I/O: ``parse(payload)`` turns the payload tools like Uptime Kuma, Grafana, Gitea
or apprise send into the text, author override and target channel Rosetta posts. Slack's own markup
is translated: ``<url|label>`` → ``[label](url)``, ``<!here>`` → ``@here``, entities unescaped.
Attachments become a quoted block each: a colour marker, pretext, linked title, text, and fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rosetta.errors import Invalid
from rosetta.text import storable

# Slack's named colours, and what a reader sees instead of a coloured bar.
COLOR_MARKERS = {"good": "🟢", "warning": "🟡", "danger": "🔴"}
LINK_RE = re.compile(r"<([^<>|\s]+)(?:\|([^<>]*))?>")
MAX_FIELD_CHARS = 2000  # a single field never floods the message
MAX_ATTACHMENTS = 20


@dataclass(frozen=True)
class SlackMessage:
    text: str
    username: str | None
    icon_url: str | None
    channel: str | None


def _s(value: Any, limit: int = MAX_FIELD_CHARS) -> str:
    """Any scalar as stripped text (tools send numbers for field values), bounded."""
    if value is None or isinstance(value, dict | list):
        return ""
    text = storable(str(value)).strip()
    return text[:limit]


def _link(match: re.Match[str]) -> str:
    target, label = match.group(1), match.group(2)
    if target.startswith("!"):  # <!here>, <!channel>, <!everyone>, <!subteam^ID|@team>
        return label or "@" + target[1:].split("^")[0]
    if target.startswith(("@", "#")):  # <@U123|ana>, <#C123|general>
        return (target[0] + label.lstrip("@#")) if label else target
    return f"[{label}]({target})" if label else target


def slack_markup(text: str) -> str:
    """Slack's mrkdwn to plain Markdown: links and mentions, then HTML entities (Slack escapes &<>)."""
    converted = LINK_RE.sub(_link, text)
    return converted.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _marker(color: Any) -> str:
    if not isinstance(color, str) or not color:
        return ""
    named = COLOR_MARKERS.get(color.lower())
    if named:
        return named
    hex_color = color.lstrip("#")
    if re.fullmatch(r"[0-9a-fA-F]{6}", hex_color):
        red, green, blue = (int(hex_color[i:i + 2], 16) for i in (0, 2, 4))
        if red > 160 and green < 110:
            return "🔴"
        if green > 140 and red < 140:
            return "🟢"
        if red > 180 and green > 140 and blue < 110:
            return "🟡"
        return "🔵"
    return ""


def render_attachment(attachment: dict[str, Any]) -> str:
    """One attachment as quoted Markdown lines; the fallback only when nothing richer is there."""
    lines: list[str] = []
    pretext = slack_markup(_s(attachment.get("pretext")))
    if pretext:
        lines.append(pretext)
    block: list[str] = []
    author = _s(attachment.get("author_name"), 200)
    if author:
        block.append(f"*{author}*")
    title, link = _s(attachment.get("title"), 500), _s(attachment.get("title_link"), 2000)
    if title:
        block.append(f"**[{slack_markup(title)}]({link})**" if link else f"**{slack_markup(title)}**")
    text = slack_markup(_s(attachment.get("text")))
    if text:
        block.extend(text.splitlines())
    fields = attachment.get("fields")
    for field in fields if isinstance(fields, list) else []:
        if not isinstance(field, dict):
            continue
        name, value = slack_markup(_s(field.get("title"), 200)), slack_markup(_s(field.get("value")))
        if name and value:
            block.append(f"**{name}:** {value}")
        elif name or value:
            block.append(f"**{name}**" if name else value)
    image = _s(attachment.get("image_url"), 2000)
    if image:
        block.append(image)
    footer = _s(attachment.get("footer"), 300)
    if footer:
        block.append(f"_{slack_markup(footer)}_")
    if not block and not pretext:
        fallback = slack_markup(_s(attachment.get("fallback")))
        if fallback:
            block.append(fallback)
    if block:
        marker = _marker(attachment.get("color"))
        if marker:
            block[0] = f"{marker} {block[0]}"
        lines.extend(f"> {line}" if line else ">" for line in block)
    return "\n".join(lines)


def parse(payload: Any, max_chars: int) -> SlackMessage:
    """The message a Slack payload asks for; 422 ``text`` when it carries nothing to show.

    Longer results are cut at ``max_chars`` with an ellipsis: a monitoring alert is better shown
    cut than refused.
    """
    if not isinstance(payload, dict):
        raise Invalid.one("payload", "The payload must be a JSON object.")
    parts: list[str] = []
    text = slack_markup(_s(payload.get("text"), max_chars + 1))  # +1: longer text is cut with an ellipsis below
    if text:
        parts.append(text)
    attachments = payload.get("attachments")
    for attachment in (attachments if isinstance(attachments, list) else [])[:MAX_ATTACHMENTS]:
        if isinstance(attachment, dict):
            rendered = render_attachment(attachment)
            if rendered:
                parts.append(rendered)
    body = "\n\n".join(parts).strip()
    if not body:
        raise Invalid.one("text", "The text field is required (or attachments with something to show).")
    if len(body) > max_chars:
        body = body[: max_chars - 1].rstrip() + "…"
    channel = _s(payload.get("channel"), 100).lstrip("#@") or None
    return SlackMessage(body, _s(payload.get("username"), 100) or None, _s(payload.get("icon_url"), 2000) or None,
                        channel)
