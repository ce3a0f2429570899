import pytest
from bank import Bank, InsufficientFunds


def test_account_numbers():
    bank = Bank()
    assert bank.open_account("ann") == 1
    assert bank.open_account("bob") == 2
    assert bank.balance(1) == 0


def test_deposit_and_withdraw_return_balance():
    bank = Bank()
    a = bank.open_account("ann")
    assert bank.deposit(a, 500) == 500
    assert bank.withdraw(a, 200) == 300
    assert bank.balance(a) == 300


def test_insufficient_funds_is_an_exception_and_keeps_balance():
    bank = Bank()
    a = bank.open_account("ann")
    bank.deposit(a, 100)
    assert issubclass(InsufficientFunds, Exception)
    with pytest.raises(InsufficientFunds):
        bank.withdraw(a, 101)
    assert bank.balance(a) == 100


def test_withdraw_everything():
    bank = Bank()
    a = bank.open_account("ann")
    bank.deposit(a, 100)
    assert bank.withdraw(a, 100) == 0


def test_transfer():
    bank = Bank()
    a, b = bank.open_account("ann"), bank.open_account("bob")
    bank.deposit(a, 300)
    assert bank.transfer(a, b, 120) is None
    assert (bank.balance(a), bank.balance(b)) == (180, 120)


def test_transfer_all_or_nothing():
    bank = Bank()
    a, b = bank.open_account("ann"), bank.open_account("bob")
    bank.deposit(a, 50)
    with pytest.raises(InsufficientFunds):
        bank.transfer(a, b, 60)
    assert (bank.balance(a), bank.balance(b)) == (50, 0)


def test_transfer_to_self():
    bank = Bank()
    a = bank.open_account("ann")
    bank.deposit(a, 50)
    with pytest.raises(ValueError):
        bank.transfer(a, a, 10)


def test_unknown_account():
    bank = Bank()
    a = bank.open_account("ann")
    with pytest.raises(KeyError):
        bank.balance(99)
    with pytest.raises(KeyError):
        bank.deposit(99, 10)
    with pytest.raises(KeyError):
        bank.transfer(a, 99, 10)


def test_non_positive_amounts():
    bank = Bank()
    a = bank.open_account("ann")
    bank.deposit(a, 10)
    with pytest.raises(ValueError):
        bank.deposit(a, 0)
    with pytest.raises(ValueError):
        bank.withdraw(a, -5)
    assert bank.balance(a) == 10


def test_transfer_non_positive_amount():
    bank = Bank()
    a, b = bank.open_account("ann"), bank.open_account("bob")
    bank.deposit(a, 10)
    with pytest.raises(ValueError):
        bank.transfer(a, b, -5)
    with pytest.raises(ValueError):
        bank.transfer(a, b, 0)
    assert (bank.balance(a), bank.balance(b)) == (10, 0)
