import pytest
from lrucache import LRUCache


def test_capacity_validation():
    with pytest.raises(ValueError):
        LRUCache(0)


def test_get_default():
    c = LRUCache(2)
    assert c.get("x") is None
    assert c.get("x", 5) == 5
    assert len(c) == 0


def test_put_get():
    c = LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1
    assert len(c) == 2


def test_eviction_of_least_recent():
    c = LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    c.put("c", 3)
    assert c.get("a") is None
    assert c.keys() == ["b", "c"]


def test_get_refreshes():
    c = LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    c.get("a")
    c.put("c", 3)
    assert c.keys() == ["a", "c"]


def test_update_refreshes_without_eviction():
    c = LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    c.put("a", 10)
    assert len(c) == 2
    assert c.keys() == ["b", "a"]
    assert c.get("a") == 10


def test_failed_get_does_not_change_order():
    c = LRUCache(3)
    c.put(1, "x")
    c.put(2, "y")
    c.get(3)
    assert c.keys() == [1, 2]


def test_capacity_one():
    c = LRUCache(1)
    c.put("a", 1)
    c.put("b", 2)
    assert c.keys() == ["b"]
    assert c.get("b") == 2


def test_stores_none_values():
    c = LRUCache(2)
    c.put("n", None)
    assert c.get("n", "missing") is None
    assert len(c) == 1
