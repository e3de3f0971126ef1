"""The content/importance/metadata rules every memory write applies (no Redis needed)."""
import pytest

from piano_dist.errors import SecurityError
from piano_dist.memory.validation import (
    sanitize_memory_data, validate_agent_id, validate_content, validate_importance, validate_metadata,
)


@pytest.mark.parametrize("text", ["one=1", "Don said: on=off", "Tom & Jerry <3", "upon=yes"])
def test_innocent_text_passes_unchanged(text):
    assert validate_content(text) == text


@pytest.mark.parametrize("text, what", [
    ("<script>alert(1)</script>", "script"),
    ("click javascript:alert(1)", "javascript:"),
    ('<img src=x onerror="x()">', "event-handler"),
    ("<iframe src=evil>", "iframe"),
    ("x" * 10_001, "limit"),
    (42, "must be a string"),
])
def test_dangerous_or_oversized_content_is_refused_with_the_reason(text, what):
    with pytest.raises(SecurityError, match=what):
        validate_content(text)


@pytest.mark.parametrize("value", [None, True, -0.1, 1.5, float("nan"), "high", [0.5]])
def test_importance_must_be_a_number_in_0_1(value):
    with pytest.raises(SecurityError, match="importance"):
        validate_importance(value)


def test_importance_accepts_numeric_strings_like_the_seed():
    assert validate_importance("0.25") == 0.25


def test_metadata_is_json_only_and_names_the_bad_field():
    assert validate_metadata({"a": [1, "b", {"c": None}], "d": {}}) == {"a": [1, "b", {"c": None}], "d": {}}
    with pytest.raises(SecurityError, match=r"metadata\['when'\].*datetime"):
        import datetime
        validate_metadata({"when": datetime.datetime.now()})
    with pytest.raises(SecurityError, match=r"metadata\['s'\]\[0\].*script"):
        validate_metadata({"s": ["<script>"]})
    with pytest.raises(SecurityError, match="non-string key"):
        validate_metadata({1: "x"})
    with pytest.raises(SecurityError, match="must be a dict"):
        validate_metadata(["x"])


def test_sanitize_memory_data_returns_the_four_clean_values():
    assert sanitize_memory_data("hi", "event", 0.5, None) == ("hi", "event", 0.5, {})


def test_agent_ids_cannot_break_the_hash_tag():
    assert validate_agent_id("Isabella Rodriguez") == "Isabella Rodriguez"
    with pytest.raises(SecurityError, match="braces"):
        validate_agent_id("a}b")
