class InsufficientFunds(Exception):
    pass


class Bank:
    def __init__(self):
        self._balances = {}
        self._owners = {}

    def _check(self, account):
        if account not in self._balances:
            raise KeyError(account)

    @staticmethod
    def _amount(amount):
        if amount <= 0:
            raise ValueError("amount must be positive")

    def open_account(self, owner):
        number = len(self._balances) + 1
        self._balances[number] = 0
        self._owners[number] = owner
        return number

    def deposit(self, account, amount):
        self._check(account)
        self._amount(amount)
        self._balances[account] += amount
        return self._balances[account]

    def withdraw(self, account, amount):
        self._check(account)
        self._amount(amount)
        if self._balances[account] < amount:
            raise InsufficientFunds(f"balance {self._balances[account]} < {amount}")
        self._balances[account] -= amount
        return self._balances[account]

    def transfer(self, src, dst, amount):
        self._check(src)
        self._check(dst)
        if src == dst:
            raise ValueError("same account")
        self.withdraw(src, amount)
        self._balances[dst] += amount

    def balance(self, account):
        self._check(account)
        return self._balances[account]
