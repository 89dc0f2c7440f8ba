"""The shared naming rules: DNS-1123 labels and names, label names and values, call names."""

from __future__ import annotations

import pytest

from chalk.common.names import (
    group_of_call_name,
    is_dns_label,
    is_dns_name,
    is_label_name,
    is_label_value,
)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        pytest.param("ner", True, id="word"),
        pytest.param("ner-v2", True, id="dash_inside"),
        pytest.param("1abc", True, id="leading_digit"),
        pytest.param("a" * 63, True, id="longest"),
        pytest.param("a" * 64, False, id="too_long"),
        pytest.param("Ner", False, id="uppercase"),
        pytest.param("-ner", False, id="leading_dash"),
        pytest.param("ner-", False, id="trailing_dash"),
        pytest.param("ner_v2", False, id="underscore"),
        pytest.param("ner\n", False, id="trailing_newline"),
        pytest.param("", False, id="empty"),
        pytest.param(7, False, id="not_text"),
    ],
)
def test_is_dns_label(text: object, valid: bool) -> None:
    assert is_dns_label(text) is valid


def test_a_caller_may_check_the_length_of_a_dns_label_itself() -> None:
    assert is_dns_label("a" * 80, max_length=None)
    assert not is_dns_label("A" * 80, max_length=None)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        pytest.param("models.example.com", True, id="host"),
        pytest.param("public", True, id="one_label"),
        pytest.param("models..example.com", False, id="empty_label"),
        pytest.param("https://example.com", False, id="url"),
        pytest.param(".".join(["a" * 63] * 4), False, id="over_253"),
    ],
)
def test_is_dns_name(text: str, valid: bool) -> None:
    assert is_dns_name(text) is valid


@pytest.mark.parametrize(
    ("text", "name", "value"),
    [
        pytest.param("Gold_1.x", True, True, id="mixed"),
        pytest.param("", False, True, id="empty"),
        pytest.param("_gold", False, False, id="leading_underscore"),
        pytest.param("a b", False, False, id="space"),
        pytest.param("a" * 64, False, False, id="too_long"),
    ],
)
def test_label_names_and_values(text: str, name: bool, value: bool) -> None:
    assert (is_label_name(text), is_label_value(text)) == (name, value)


@pytest.mark.parametrize(
    ("name", "group"),
    [
        pytest.param("model.ner", "ner", id="group"),
        pytest.param("model.ner-v2", "ner-v2", id="dash"),
        pytest.param("ner", None, id="no_prefix"),
        pytest.param("model.", None, id="no_group"),
        pytest.param("model.Ner", None, id="uppercase"),
        pytest.param("models.ner", None, id="wrong_prefix"),
    ],
)
def test_group_of_call_name(name: str, group: str | None) -> None:
    assert group_of_call_name(name) == group
