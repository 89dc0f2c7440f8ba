"""Reading Dockerfiles: instructions, parser directives, heredocs and Docker's word rules.

``images.build_image`` calls ``parse_dockerfile``, then ``expand_words`` and ``raw_words`` on
each instruction's arguments.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from chalk.common.errors import ValidationError
from chalk.deploy.errors import DeployError

__all__ = [
    "VARIABLE_NAME",
    "BuildError",
    "Dockerfile",
    "DockerfileError",
    "Instruction",
    "WordError",
    "expand_words",
    "parse_dockerfile",
    "raw_words",
]

# What ``$NAME`` may name; ARG checks the names it declares against it too.
VARIABLE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Every instruction Docker knows; the builder carries out or names each of them.
_INSTRUCTIONS: Final = frozenset(
    {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "LABEL", "MAINTAINER"}
    | {"RUN", "WORKDIR", "USER", "VOLUME", "HEALTHCHECK", "SHELL", "STOPSIGNAL", "ONBUILD"}
)
_DIRECTIVE = re.compile(r"#[ \t]*([A-Za-z][A-Za-z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*")
_KNOWN_DIRECTIVES: Final = frozenset({"escape", "syntax", "check"})
_HEREDOC = re.compile(r"(?:^|\s)<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_OPERATOR = re.compile(r":?[-+?]")


# --- errors ------------------------------------------------------------------------------


class BuildError(DeployError):
    """An image build failed: no build context or Dockerfile, a COPY source missing, ..."""


class DockerfileError(BuildError, ValidationError):
    """The Dockerfile does not parse; the message names the file and the line."""


class WordError(DeployError, ValueError):
    """A quoting or ``${...}`` mistake in an instruction's arguments; the caller adds where."""


# --- the parsed file ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case), raw arguments and first line."""

    keyword: str
    arguments: str
    line: int
    heredocs: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The instruction as one line, for build output: ``COPY model.py /app/``."""
        return " ".join(f"{self.keyword} {self.arguments}".split())


@dataclass(frozen=True, slots=True)
class Dockerfile:
    """A parsed Dockerfile: its instructions in order and its escape character."""

    path: str
    instructions: tuple[Instruction, ...]
    escape: str = "\\"


def parse_dockerfile(text: str, *, path: str = "Dockerfile") -> Dockerfile:
    """Split a Dockerfile into instructions, as Docker's parser does.

    Parser directives (``# escape=``), comments, blank lines, line continuations and
    heredocs are handled here; instruction names are case-insensitive. An unknown
    instruction raises ``DockerfileError`` naming ``path`` and the line.

    Examples
    --------
    >>> text = "from python:3.11\\n# a comment\\nRUN pip install \\\\\\n  numpy\\n"
    >>> parsed = parse_dockerfile(text)
    >>> [(i.keyword, i.arguments, i.line) for i in parsed.instructions]
    [('FROM', 'python:3.11', 1), ('RUN', 'pip install   numpy', 3)]
    >>> parse_dockerfile("FROM x\\nCOPPY a b\\n")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    chalk.deploy.local.dockerfile.DockerfileError: Dockerfile:2: unknown instruction 'COPPY': ...
    """
    lines = text.removeprefix("\ufeff").splitlines()
    escape, index = _directives(lines, path)
    continued = re.compile(re.escape(escape) + r"[ \t]*$")
    instructions: list[Instruction] = []
    while index < len(lines):
        line = index + 1
        body, index = _logical_line(lines, index, continued)
        words = body.strip().split(None, 1)
        if not words:
            continue
        keyword = words[0].upper()
        if keyword not in _INSTRUCTIONS:
            raise DockerfileError(f"{path}:{line}: {_unknown_instruction(words[0])}")
        heredocs: tuple[str, ...] = ()
        arguments = words[1].strip() if len(words) > 1 else ""
        if keyword in {"RUN", "COPY", "ADD"}:
            heredocs, index = _heredocs(arguments, lines, index, f"{path}:{line}")
        instructions.append(Instruction(keyword, arguments, line, heredocs))
    return Dockerfile(path=path, instructions=tuple(instructions), escape=escape)


def expand_words(
    text: str, variables: Mapping[str, str], *, escape: str = "\\", split: bool = True
) -> list[str]:
    """Docker's word rules: quotes removed, ``$VAR``/``${VAR}``/``${VAR:-default}`` expanded.

    With ``split`` the text is cut at unquoted whitespace (as for COPY's arguments);
    without it the result is one word (as for WORKDIR). Single quotes stop expansion. A
    quoting or ``${...}`` mistake raises ``WordError``.

    Examples
    --------
    >>> expand_words('"$APP/a b" ${MISSING:-/srv}/x \\'$HOME\\'', {"APP": "/app"})
    ['/app/a b', '/srv/x', '$HOME']
    >>> expand_words("${APP:+set} ${NONE+set}", {"APP": "/app"}, split=False)
    ['set ']
    """
    return _Lexer(text, variables, escape, split=split).run()


def raw_words(text: str, escape: str) -> list[str]:
    """``text`` cut at unquoted whitespace with quotes and escapes kept (Docker's parseWords)."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if char == escape and quote != "'" and index + 1 < len(text):
            word.append(text[index : index + 2])
            index += 2
            continue
        if quote:
            quote = "" if char == quote else quote
            word.append(char)
        elif char in "'\"":
            quote = char
            word.append(char)
        elif char.isspace():
            if word:
                words.append("".join(word))
            word = []
        else:
            word.append(char)
        index += 1
    if word:
        words.append("".join(word))
    return words


# --- parsing -----------------------------------------------------------------------------


def _directives(lines: Sequence[str], path: str) -> tuple[str, int]:
    """The escape character and the index of the first line after the parser directives."""
    escape = "\\"
    seen: set[str] = set()
    for index, line in enumerate(lines):
        match = _DIRECTIVE.fullmatch(line.strip())
        if match is None or match[1].lower() not in _KNOWN_DIRECTIVES:
            return escape, index
        name, value = match[1].lower(), match[2]
        if name in seen:
            raise DockerfileError(
                f"{path}:{index + 1}: the {name} directive appears twice: expected it once"
            )
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(
                    f"{path}:{index + 1}: the escape directive takes \\ or `, got {value!r}"
                )
            escape = value
    return escape, len(lines)


def _logical_line(lines: Sequence[str], index: int, continued: re.Pattern[str]) -> tuple[str, int]:
    """One instruction's text with its continuation lines joined, and the next line's index.

    Comment lines are dropped, also between continuation lines, as Docker drops them.
    """
    first = lines[index].lstrip()
    index += 1
    if first.startswith("#"):
        return "", index
    body, more = _cut_continuation(first, continued)
    while more and index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        part, more = _cut_continuation(line, continued)
        body += part
    return body, index


def _cut_continuation(line: str, continued: re.Pattern[str]) -> tuple[str, bool]:
    match = continued.search(line)
    return (line[: match.start()], True) if match else (line, False)


def _heredocs(
    arguments: str, lines: Sequence[str], index: int, where: str
) -> tuple[tuple[str, ...], int]:
    """The bodies of the heredocs an instruction opens (``<<EOF``) and the line after them."""
    bodies: list[str] = []
    for match in _HEREDOC.finditer(arguments):
        strip_tabs, name = match[1] == "-", match[3]
        body: list[str] = []
        while True:
            if index >= len(lines):
                raise DockerfileError(
                    f"{where}: heredoc <<{name} is not closed: expected a line holding only {name}"
                )
            text = lines[index].lstrip("\t") if strip_tabs else lines[index]
            index += 1
            if text == name:
                break
            body.append(text)
        bodies.append("\n".join(body))
    return tuple(bodies), index


def _unknown_instruction(word: str) -> str:
    known = sorted(_INSTRUCTIONS)
    message = f"unknown instruction {word!r}: expected one of {', '.join(known)}"
    close = difflib.get_close_matches(word.upper(), known, n=1)
    return f"{message}; did you mean {close[0]}?" if close else message


# --- words -------------------------------------------------------------------------------


class _Lexer:
    """Docker's shell-word lexer: quotes, the escape character and variable expansion."""

    def __init__(
        self, text: str, variables: Mapping[str, str], escape: str, *, split: bool
    ) -> None:
        self._text = text
        self._pos = 0
        self._variables = variables
        self._escape = escape
        self._split = split
        self._words: list[str] = []
        self._word: list[str] = []
        self._started = False

    def run(self) -> list[str]:
        text = self._text
        while self._pos < len(text):
            char = text[self._pos]
            self._pos += 1
            if char == self._escape:
                self._literal(text[self._pos] if self._pos < len(text) else char)
                self._pos += 1
            elif char == "'":
                self._single_quoted()
            elif char == '"':
                self._double_quoted()
            elif char == "$":
                self._loose(self._dollar())
            else:
                self._loose(char)
        self._end_word()
        return self._words

    def _literal(self, text: str) -> None:
        self._word.append(text)
        self._started = True

    def _loose(self, text: str) -> None:
        """Unquoted text: its whitespace separates words when splitting."""
        for char in text:
            if self._split and char.isspace():
                self._end_word()
            else:
                self._literal(char)

    def _end_word(self) -> None:
        if self._started:
            self._words.append("".join(self._word))
        self._word.clear()
        self._started = False

    def _single_quoted(self) -> None:
        end = self._text.find("'", self._pos)
        if end < 0:
            raise WordError(f"a single quote is not closed in {self._text!r}")
        self._literal(self._text[self._pos : end])
        self._pos = end + 1

    def _double_quoted(self) -> None:
        text, parts = self._text, []
        while True:
            if self._pos >= len(text):
                raise WordError(f"a double quote is not closed in {text!r}")
            char = text[self._pos]
            self._pos += 1
            if char == '"':
                break
            if char == self._escape and text[self._pos : self._pos + 1] in ('"', "$", char):
                parts.append(text[self._pos])
                self._pos += 1
            elif char == "$":
                parts.append(self._dollar())
            else:
                parts.append(char)
        self._literal("".join(parts))

    def _dollar(self) -> str:
        """The value of the variable named after a ``$`` (``$`` itself when none is)."""
        if self._text.startswith("{", self._pos):
            return self._braced()
        match = VARIABLE_NAME.match(self._text, self._pos)
        if match is None:
            return "$"
        self._pos = match.end()
        return self._variables.get(match[0], "")

    def _braced(self) -> str:
        start = self._pos - 1
        match = VARIABLE_NAME.match(self._text, self._pos + 1)
        if match is None:
            raise WordError(f"bad substitution {self._text[start:]!r}: expected ${{NAME}}")
        name, self._pos = match[0], match.end()
        if self._pos >= len(self._text):
            raise WordError(f"a ${{ is not closed in {self._text!r}: expected }}")
        if self._text.startswith("}", self._pos):
            self._pos += 1
            return self._variables.get(name, "")
        operator = _OPERATOR.match(self._text, self._pos)
        if operator is None:
            raise WordError(
                f"unsupported substitution {self._text[start:]!r}: expected ${{{name}}}, "
                f"${{{name}:-default}} or ${{{name}:+alternative}}"
            )
        end = self._closing_brace(operator.end())
        word = "".join(
            _Lexer(
                self._text[operator.end() : end], self._variables, self._escape, split=False
            ).run()
        )
        self._pos = end + 1
        return _substitute(name, self._variables.get(name), operator[0], word)

    def _closing_brace(self, index: int) -> int:
        depth = 0
        while index < len(self._text):
            if self._text[index] == self._escape:
                index += 2
                continue
            if self._text.startswith("${", index):
                depth += 1
                index += 1
            elif self._text[index] == "}":
                if depth == 0:
                    return index
                depth -= 1
            index += 1
        raise WordError(f"a ${{ is not closed in {self._text!r}: expected }}")


def _substitute(name: str, value: str | None, operator: str, word: str) -> str:
    """``${name<operator>word}``: ``:-``/``-`` default, ``:+``/``+`` alternative, ``:?``/``?``.

    With a colon an empty value counts as unset.
    """
    is_set = value is not None and (value != "" or not operator.startswith(":"))
    kind = operator[-1]
    if kind == "+":
        return word if is_set else ""
    if value is not None and is_set:
        return value
    if kind == "-":
        return word
    raise WordError(f"{name} is not set: {word or 'the Dockerfile requires it'}")
