"""``sync.clients.rows``: one page of list rows in every shape PHP's json_encode gives them."""
from __future__ import annotations

import pytest

from sync.clients import RowsShapeError, rows
from core.errors import UpstreamError

A, B = {"ID": "1"}, {"ID": "2"}


@pytest.mark.parametrize("result, key, expected", [
    ([A, B], None, [A, B]),
    ({"0": A, "1": B}, None, [A, B]),                     # keyed by index once a gap appeared
    ({"75": A, "90": B}, None, [A, B]),                   # keyed by ID
    ({"users": [A, B]}, None, [A, B]),                    # one wrapping list, found by itself
    ({"items": [A], "total": 1}, "items", [A]),
    ({"items": {"0": A, "1": B}}, "items", [A, B]),       # a wrapped object-shaped list
    ([A, B], "items", [A, B]),                            # key given, but the rows came bare
    ({"0": A}, "items", [A]),
])
def test_every_php_shape_of_a_page_gives_its_rows(result, key, expected) -> None:
    assert rows("crm.deal.list", result, key) == expected


def test_crm_item_list_reads_under_items_by_itself() -> None:
    assert rows("crm.item.list", {"items": [A, B]}) == [A, B]
    assert rows("CRM.ITEM.LIST", {"items": []}) == []


@pytest.mark.parametrize("nothing", [None, [], {}, "", False])
def test_php_ways_of_saying_nothing_give_no_rows(nothing) -> None:
    assert rows("crm.deal.list", nothing) == []


def test_rows_that_are_not_objects_are_skipped_with_a_warning(log_lines) -> None:
    assert rows("crm.contact.list", [A, "junk", None, ["x"], B]) == [A, B]
    assert log_lines == ["Bitrix24 crm.contact.list: 3 row(s) that are not objects; ignored\n"]


@pytest.mark.parametrize("result, says", [
    (42, "the rows are a int"),
    ("abc", "the rows are a str"),
    (0, "the rows are a int"),
    ({"total": 3, "next": 50}, "cannot find the rows in the reply (keys ['next', 'total']); pass key="),
    ({"items": [A], "other": [B]}, "cannot find the rows"),
])
def test_an_unreadable_page_raises_naming_the_method(result, says: str) -> None:
    with pytest.raises(RowsShapeError) as info:
        rows("crm.deal.list", result)
    assert str(info.value).startswith("Bitrix24 crm.deal.list: ") and says in str(info.value)
    assert isinstance(info.value, UpstreamError) and info.value.code == "UNEXPECTED_REPLY"


def test_a_missing_key_is_named_in_the_error() -> None:
    with pytest.raises(RowsShapeError, match="it has no 'items' list"):
        rows("crm.item.list", {"types": [A], "total": 1})
