"""A small Dockerfile reader for tests: instructions with their arguments, by build stage.

Handles comments, line continuations (a trailing backslash; comment lines inside a continued
instruction are dropped, as Docker does), exec form (a JSON array) and shell form. Enough for
deploy/Dockerfile; not a full parser (no parser directives other than being skipped, no heredocs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the line, continuations joined with a space
    line: int  # where it starts (1-based)

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction (CMD/ENTRYPOINT/RUN/HEALTHCHECK CMD), else None."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            _, sep, text = text.partition(" CMD ")
            if not sep:
                return None
        text = text.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value

    def options(self) -> dict[str, str]:
        """``--name=value`` flags at the start of the arguments (COPY --from=..., HEALTHCHECK --interval=...)."""
        out = {}
        for word in self.args.split():
            if not word.startswith("--"):
                break
            name, _, value = word[2:].partition("=")
            out[name] = value
        return out

    def words(self) -> list[str]:
        """The arguments without the leading ``--flags``."""
        words = self.args.split()
        while words and words[0].startswith("--"):
            words.pop(0)
        return words


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        (found,) = self.all(keyword)
        return found


def parse(text: str) -> list[Stage]:
    stages: list[Stage] = []
    pending: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = n
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        keyword, _, args = " ".join(p for p in pending if p).partition(" ")
        pending = []
        ins = Instruction(keyword.upper(), args.strip(), start)
        if ins.keyword == "FROM":
            words = ins.args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"line {n}: {ins.keyword} before FROM"
            stages[-1].instructions.append(ins)
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return stages
