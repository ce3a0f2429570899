import pytest
from inventory import Inventory


def test_empty():
    inv = Inventory()
    assert inv.quantity("apple") == 0
    assert inv.low_stock(10) == []


def test_add_accumulates():
    inv = Inventory()
    inv.add("apple", 3)
    inv.add("apple", 4)
    assert inv.quantity("apple") == 7


def test_add_rejects_zero_and_negative():
    inv = Inventory()
    with pytest.raises(ValueError):
        inv.add("apple", 0)
    with pytest.raises(ValueError):
        inv.add("apple", -2)
    assert inv.quantity("apple") == 0


def test_remove_partial():
    inv = Inventory()
    inv.add("pear", 5)
    inv.remove("pear", 2)
    assert inv.quantity("pear") == 3


def test_remove_unknown_raises_keyerror():
    with pytest.raises(KeyError):
        Inventory().remove("ghost", 1)


def test_remove_too_many_leaves_stock():
    inv = Inventory()
    inv.add("pear", 2)
    with pytest.raises(ValueError):
        inv.remove("pear", 3)
    assert inv.quantity("pear") == 2


def test_remove_non_positive():
    inv = Inventory()
    inv.add("pear", 2)
    with pytest.raises(ValueError):
        inv.remove("pear", 0)


def test_remove_to_zero_drops_item():
    inv = Inventory()
    inv.add("fig", 2)
    inv.remove("fig", 2)
    assert inv.quantity("fig") == 0
    assert inv.low_stock(100) == []
    with pytest.raises(KeyError):
        inv.remove("fig", 1)


def test_low_stock_sorted_and_strict():
    inv = Inventory()
    inv.add("pear", 5)
    inv.add("apple", 1)
    inv.add("kiwi", 9)
    inv.add("banana", 4)
    assert inv.low_stock(5) == ["apple", "banana"]
    assert inv.low_stock(6) == ["apple", "banana", "pear"]
    assert inv.low_stock(1) == []
