"""The shell blocks of the Markdown documentation, as the tests read them: each fenced block
tagged sh, bash or shell, split into commands (backslash continuations joined)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHELL_TAGS = frozenset({"sh", "bash", "shell", "console"})
_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


def documents() -> list[Path]:
    """Every page a user is pointed to: the README, docs/ and the READMEs of the folders."""
    return [
        REPO / "README.md",
        *sorted((REPO / "docs").glob("*.md")),
        REPO / "cluster/README.md",
        REPO / "bench/README.md",
        REPO / "loadtest/README.md",
    ]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    """Line number of the opening fence (1-based)."""
    tag: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    def commands(self) -> list[str]:
        """The block's commands: comment lines and trailing `# ...` comments dropped,
        backslash-continued lines joined into one."""
        out: list[str] = []
        pending = ""
        for raw in self.text.splitlines():
            line = strip_comment(raw).rstrip()
            if not line.strip() and not pending:
                continue
            if line.endswith("\\"):
                pending += line[:-1].rstrip() + " "
                continue
            command = (pending + line.strip()).strip()
            pending = ""
            if command:
                out.append(command)
        if pending.strip():
            out.append(pending.strip())
        return out


def strip_comment(line: str) -> str:
    """The line without a `#` comment outside quotes (a `#` inside a word, like `a#b`, stays)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def blocks(path: Path, tags: frozenset[str] = SHELL_TAGS) -> list[Block]:
    """The fenced code blocks of `path` whose tag is in `tags`."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, tag = m.group(1), m.group(2).lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        if tag in tags:
            found.append(Block(path, start + 1, tag, "\n".join(body)))
    return found


def shell_blocks() -> list[Block]:
    return [b for path in documents() for b in blocks(path)]
