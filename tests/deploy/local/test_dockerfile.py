"""Reading Dockerfiles: instructions, parser directives, heredocs and Docker's word rules."""

from __future__ import annotations

import pytest

from chalk.deploy.local.dockerfile import DockerfileError, expand_words, parse_dockerfile


def test_parse_skips_comments_and_blank_lines_and_joins_continuations() -> None:
    text = (
        "# a comment\n"
        "\n"
        "from python:3.11-slim\n"
        "RUN apt-get update && \\\n"
        "    # a comment inside the instruction\n"
        "\n"
        "    apt-get install -y curl\n"
        "  copy a.txt /app/\n"
    )

    parsed = parse_dockerfile(text)

    assert [(i.keyword, i.arguments, i.line) for i in parsed.instructions] == [
        ("FROM", "python:3.11-slim", 3),
        ("RUN", "apt-get update &&     apt-get install -y curl", 4),
        ("COPY", "a.txt /app/", 8),
    ]


@pytest.mark.parametrize(
    ("text", "escape", "arguments"),
    [
        pytest.param("# escape=`\nRUN a `\n  b\n", "`", "a   b", id="backtick_escape"),
        pytest.param("# syntax=docker/dockerfile:1\nRUN a \\\n b\n", "\\", "a  b", id="syntax"),
        pytest.param("# hello\n# escape=`\nRUN a `\n", "\\", "a `", id="directive_after_comment"),
    ],
)
def test_parse_directives(text: str, escape: str, arguments: str) -> None:
    parsed = parse_dockerfile(text)

    assert parsed.escape == escape
    assert [i.arguments for i in parsed.instructions] == [arguments]


def test_parse_consumes_heredoc_bodies() -> None:
    parsed = parse_dockerfile('RUN <<EOF\npip install x\nEOF\nCMD ["x"]\n')

    assert [(i.keyword, i.line) for i in parsed.instructions] == [("RUN", 1), ("CMD", 4)]
    assert parsed.instructions[0].heredocs == ("pip install x",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "FROM x\n\nCOPPY a /b\n",
            r"^build/Dockerfile:3: unknown instruction 'COPPY': .*did you mean COPY\?",
            id="unknown_instruction",
        ),
        pytest.param(
            "FROM x\nRUN <<EOF\necho\n",
            r"^build/Dockerfile:2: heredoc <<EOF is not closed",
            id="heredoc",
        ),
        pytest.param(
            "# escape=x\nFROM x\n", r"^build/Dockerfile:1: the escape directive", id="bad_escape"
        ),
    ],
)
def test_parse_errors_name_the_file_and_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        parse_dockerfile(text, path="build/Dockerfile")


@pytest.mark.parametrize(
    ("text", "variables", "split", "words"),
    [
        pytest.param("$A/x ${A}/y", {"A": "/app"}, True, ["/app/x", "/app/y"], id="plain"),
        pytest.param("${A:-/d}", {}, True, ["/d"], id="default_unset"),
        pytest.param("${A:-/d}", {"A": ""}, True, ["/d"], id="default_empty"),
        pytest.param("${A-/d}x", {"A": ""}, True, ["x"], id="default_only_unset"),
        pytest.param("${A:+on}|${B:+on}", {"A": "1"}, True, ["on|"], id="alternative"),
        pytest.param("'$A' \\$A", {"A": "1"}, True, ["$A", "$A"], id="no_expansion"),
        pytest.param('"$A b" c', {"A": "a"}, True, ["a b", "c"], id="double_quotes"),
        pytest.param("$A", {"A": "x y"}, True, ["x", "y"], id="value_splits"),
        pytest.param("$A  z", {"A": "x y"}, False, ["x y  z"], id="one_word"),
        pytest.param("${A:-${B}/x}", {"B": "/b"}, True, ["/b/x"], id="nested"),
        pytest.param("cost: $5 $", {}, True, ["cost:", "$5", "$"], id="lone_dollar"),
    ],
)
def test_expand_words(text: str, variables: dict[str, str], split: bool, words: list[str]) -> None:
    assert expand_words(text, variables, split=split) == words


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param('"open', "double quote is not closed", id="double_quote"),
        pytest.param("'open", "single quote is not closed", id="single_quote"),
        pytest.param("${A:?give A}", "A is not set: give A", id="required"),
        pytest.param("${A", "is not closed", id="unclosed_brace"),
        pytest.param("${A#x}", "unsupported substitution", id="modifier"),
    ],
)
def test_expand_words_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expand_words(text, {})
