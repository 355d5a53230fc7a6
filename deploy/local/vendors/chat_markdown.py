"""How a chat client shows the markdown subset DingTalk, WeCom and Feishu robots accept: links, headings, bold."""

from __future__ import annotations

import re

LINK = re.compile(r"(?<!!)\[([^\]]+)\]\((https?://[^)\s]+)\)")
URL = re.compile(r"https?://\S+")


def links(markdown: str) -> list[tuple[str, str]]:
    """(label, url) of every ``[label](url)`` link."""
    return [(m.group(1), m.group(2)) for m in LINK.finditer(markdown)]


def readable(markdown: str) -> str:
    """The text as a person reads it: links show their label, heading marks and bold marks are not shown."""
    text = LINK.sub(lambda m: m.group(1), markdown)
    text = re.sub(r"^#{1,6} ", "", text, flags=re.MULTILINE)
    text = text.replace("**", "")
    return "\n".join(line.rstrip() for line in text.split("\n"))


def labelled_urls(text: str) -> list[tuple[str, str]]:
    """(label, url) of each URL in plain text, labelled by what precedes it on its line ("Ack: https://...")."""
    found = []
    for line in text.split("\n"):
        for m in URL.finditer(line):
            label = line[: m.start()].strip().rstrip(":").strip()
            found.append((label, m.group(0)))
    return found
