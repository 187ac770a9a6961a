"""The query parser: the AST it builds, where it says a query is wrong, and that random text
only ever produces a QueryError (a 400), never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annostream.errors import QueryError
from annostream.query import And, Compare, Has, In, Not, Or, parse, to_text


def cmp(node: object) -> tuple[str, tuple[str, ...], str, object]:
    assert isinstance(node, Compare), node
    return node.field.namespace, node.field.path, node.op, node.value.value


def test_simple_comparison() -> None:
    assert cmp(parse("labels.cat > 2")) == ("labels", ("cat",), ">", 2)


@pytest.mark.parametrize(
    "text, op",
    [
        ("3 < labels.cat", ">"),
        ("3 <= labels.cat", ">="),
        ("3 > labels.cat", "<"),
        ("3 >= labels.cat", "<="),
        ("3 = labels.cat", "="),
        ("3 != labels.cat", "!="),
    ],
)
def test_mirrored_operators(text: str, op: str) -> None:
    assert cmp(parse(text)) == ("labels", ("cat",), op, 3)


def test_operator_spellings() -> None:
    assert cmp(parse("labels.cat == 1"))[2] == "="
    assert cmp(parse("labels.cat <> 1"))[2] == "!="


def test_and_binds_tighter_than_or() -> None:
    node = parse("labels.a > 0 or labels.b > 0 and labels.c > 0")
    assert isinstance(node, Or)
    assert isinstance(node.operands[1], And)
    node = parse("(labels.a > 0 or labels.b > 0) and labels.c > 0")
    assert isinstance(node, And) and isinstance(node.operands[0], Or)


def test_not_binds_tightest() -> None:
    node = parse("not labels.a and labels.b")
    assert isinstance(node, And) and isinstance(node.operands[0], Not)


@pytest.mark.parametrize(
    "text",
    [
        "labels.cat AND labels.dog",
        "labels.cat And labels.dog",
        "labels.cat && labels.dog",
    ],
)
def test_keywords_in_any_case(text: str) -> None:
    assert isinstance(parse(text), And)


def test_or_not_in_any_case() -> None:
    node = parse("NOT labels.cat Or nOt labels.dog || !labels.x")
    assert isinstance(node, Or) and all(isinstance(n, Not) for n in node.operands)


def test_keywords_are_whole_words() -> None:
    # `android`, `order`, `notes`, `index`, `trueish` are names, not keywords
    node = parse("labels.android and labels.order or labels.notes and labels.index")
    assert isinstance(node, Or)
    assert cmp(parse("file.metadata.x = trueish"))[3] == "trueish"
    assert cmp(parse("labels.and > 1"))[1] == ("and",)
    with pytest.raises(QueryError):
        parse("labels.cat ANDx labels.dog")


def test_bare_field_means_present() -> None:
    node = parse("labels.cat")
    assert isinstance(node, Has) and node.field.path == ("cat",)


def test_namespace_aliases() -> None:
    for a, b in [
        ("label", "labels"),
        ("attribute", "attributes"),
        ("Labels", "labels"),
        ("FILE", "file"),
        ("datasets", "dataset"),
        ("instance", "instances"),
    ]:
        node = parse(f"{a}.x = 1")
        assert isinstance(node, Compare) and node.field.namespace == b


def test_quoted_names_and_strings() -> None:
    assert cmp(parse('labels."traffic light" > 1'))[1] == ("traffic light",)
    assert cmp(parse("labels.'traffic light' > 1"))[1] == ("traffic light",)
    assert cmp(parse('file.name = "a \\"b\\".jpg"'))[3] == 'a "b".jpg'
    assert cmp(parse("file.name = 'it\\'s'"))[3] == "it's"


def test_unquoted_strings() -> None:
    assert cmp(parse("file.type = image")) == ("file", ("type",), "=", "image")
    assert cmp(parse("file.name = a.jpg"))[3] == "a.jpg"
    assert cmp(parse("file.name = file.jpg"))[3] == "file.jpg"  # left side is the field
    assert cmp(parse("image = file.type")) == ("file", ("type",), "=", "image")


def test_literals() -> None:
    assert cmp(parse("file.metadata.f = TRUE"))[3] is True
    assert cmp(parse("file.metadata.f = false"))[3] is False
    assert cmp(parse("file.metadata.f = -2.5e1"))[3] == -25.0
    assert cmp(parse("file.metadata.f = 99999999999999999999999"))[3] == float(10**23 - 1)


def test_in_lists() -> None:
    node = parse('file.name in ["a.jpg", b.jpg, 3,]')
    assert isinstance(node, In) and [v.value for v in node.values] == ["a.jpg", "b.jpg", 3]
    node = parse("file.name NOT IN []")
    assert isinstance(node, Not) and isinstance(node.operand, In) and node.operand.values == ()
    node = parse("dataset.id in [1, 2]")
    assert isinstance(node, In) and node.field.namespace == "dataset"


def test_metadata_paths() -> None:
    assert cmp(parse("file.metadata.a.b = 1"))[1] == ("metadata", "a", "b")
    assert cmp(parse('file.metadata."my key" = 1'))[1] == ("metadata", "my key")


def test_round_trip() -> None:
    for text in [
        "labels.cat > 2 and labels.dog = 0 or not file.type = image",
        'labels."traffic light" >= 1',
        "not (labels.a or labels.b) and labels.c",
        "file.name not in [a, 'b']",
        "labels.and > 1",
    ]:
        node = parse(text)
        assert parse(to_text(node)) == node or to_text(parse(to_text(node))) == to_text(node)


# ---------------------------------------------------------------------------- errors


def error(text: str) -> QueryError:
    with pytest.raises(QueryError) as info:
        parse(text)
    assert info.value.status == 400
    return info.value


def test_error_at_end_of_query() -> None:
    e = error("labels.cat >")
    assert (e.detail["line"], e.detail["column"]) == (1, 13)
    assert "a number" in e.detail["expected"] and e.detail["query"] == "labels.cat >"
    assert "line 1, column 13" in e.message


def test_error_unexpected_character() -> None:
    e = error("labels.cat @ 2")
    assert (e.detail["line"], e.detail["column"]) == (1, 12)
    assert e.detail["expected"]


def test_error_unexpected_token_position_on_second_line() -> None:
    e = error("labels.cat > 2 and\n  labels.dog > > 1")
    assert (e.detail["line"], e.detail["column"]) == (2, 16)


def test_error_unclosed_parenthesis() -> None:
    e = error("(labels.cat > 2")
    assert (e.detail["line"], e.detail["column"]) == (1, 16)
    assert "')'" in e.detail["expected"]


def test_error_unclosed_string() -> None:
    e = error('file.name = "abc')
    assert (e.detail["line"], e.detail["column"]) == (1, 13)


def test_error_dangling_keyword() -> None:
    e = error("labels.cat and")
    assert e.detail["column"] == 15


def test_error_empty() -> None:
    assert error("").detail["line"] == 1
    assert error("   \n ").detail["line"] == 2


def test_unknown_namespace_suggests() -> None:
    e = error("lables.cat > 2")
    assert e.detail["unknown"] == "lables" and e.detail["kind"] == "field"
    assert e.detail["did_you_mean"][0] == "labels"
    assert "did you mean 'labels'?" in e.message


def test_unknown_bare_word() -> None:
    e = error("cat > 2")
    assert e.detail["unknown"] == "cat" and e.detail["kind"] == "field"


def test_namespace_alone() -> None:
    e = error("labels > 2")
    assert (e.detail["line"], e.detail["column"]) == (1, 7)


def test_two_literals() -> None:
    e = error("3 < 4")
    assert e.detail["column"] == 3


def test_limits() -> None:
    error("labels.cat > 0 or " * 2000 + "labels.cat > 0")  # too long
    error("(" * 200 + "labels.cat" + ")" * 200)  # too deep
    error("not " * 500 + "labels.cat")
    error(" or ".join(["labels.cat"] * 600))  # too many terms
    error("file.id in [" + ",".join(["1"] * 1200) + "]")  # too long a list


def test_not_a_string() -> None:
    with pytest.raises(QueryError):
        parse(42)  # type: ignore[arg-type]


def test_lone_surrogate() -> None:
    error('file.name = "\ud800"')


# ------------------------------------------------------------------------- fuzzing

ALPHABET = st.sampled_from(
    [
        "labels",
        "label",
        "file",
        "metadata",
        "attributes",
        "instances",
        "dataset",
        "cat",
        ".",
        " ",
        "(",
        ")",
        "[",
        "]",
        ",",
        "=",
        "!=",
        "<",
        ">=",
        "and",
        "OR",
        "not",
        "in",
        "!",
        "&&",
        "||",
        '"',
        "'",
        "\\",
        "3",
        "-1.5e3",
        "true",
        "\n",
        "_",
        "é",
        "\x00",
        ";",
        "--",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_random_text(text: str) -> None:
    try:
        parse(text)
    except QueryError as e:
        assert e.status == 400 and isinstance(e.detail, dict)


@settings(max_examples=600, deadline=None)
@given(st.lists(ALPHABET, max_size=25).map("".join))
def test_fuzz_token_soup(text: str) -> None:
    try:
        node = parse(text)
    except QueryError as e:
        assert e.status == 400
        detail = e.detail
        assert isinstance(detail, dict)
        if "line" in detail and "unknown" not in detail and "field" not in detail:
            assert detail["line"] >= 1 and detail["column"] >= 1
            assert isinstance(detail["expected"], list)
    else:
        assert isinstance(node, (And, Or, Not, Compare, In, Has))
