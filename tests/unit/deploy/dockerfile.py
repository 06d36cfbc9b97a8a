"""A small reader for deploy/docker/Dockerfile and the .dockerignore allowlist (for the checks)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str  # the rest of the (joined) line
    line: int

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON array form (`CMD ["a", "b"]`), or None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list)
        assert all(isinstance(v, str) for v in value)
        return value

    @property
    def healthcheck_command(self) -> list[str] | None:
        """HEALTHCHECK [options] CMD <command>: the command in exec form (None: shell form)."""
        words = self.args.split(None)
        while words and words[0].startswith("--"):
            words.pop(0)
        assert words[:1] == ["CMD"], f"line {self.line}: HEALTHCHECK without CMD"
        return Instruction("CMD", self.args.split("CMD", 1)[1], self.line).exec_form

    def flags(self) -> dict[str, str]:
        return dict(re.findall(r"--([a-z-]+)=(\S+)", self.args))

    def words(self) -> list[str]:
        """Arguments without the leading --flag=value options."""
        words = self.args.split()
        while words and words[0].startswith("--"):
            words.pop(0)
        return words


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name}: no {keyword}"
        return found[-1]


def parse(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    pending = ""
    start = 0
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by Docker too
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, args = text.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), start)
        if instruction.keyword == "FROM":
            words = instruction.words()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=words[0]))
        else:
            assert stages, f"{path}:{start}: {keyword} before FROM"
            stages[-1].instructions.append(instruction)
    assert not pending, f"{path}: ends inside a continued line"
    return stages


# --- .dockerignore (moby/patternmatcher semantics: last match wins, parents count) -------------
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"
                i += 1
            continue
        char = pattern[i]
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(out)


def ignore_rules(path: Path) -> list[tuple[bool, re.Pattern[str], str]]:
    """(exclude?, regex, pattern) in file order."""
    rules = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        rules.append((not negate, _pattern_regex(pattern), pattern))
    return rules


def in_context(relative: str, rules: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    """Whether the file `relative` (to the context root) reaches the builder."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for exclude, regex, _ in rules:
        if any(regex.fullmatch(c) for c in candidates):
            excluded = exclude
    return not excluded


def stage_env(stage: Stage) -> dict[str, str]:
    """The stage's ENV key=value pairs (values without spaces or quotes, as this file uses)."""
    env = {}
    for instruction in stage.all("ENV"):
        for word in instruction.args.split():
            key, sep, value = word.partition("=")
            assert sep, f"line {instruction.line}: ENV {word!r} is not KEY=value"
            env[key] = value
    return env
