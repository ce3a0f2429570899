class Inventory:
    def __init__(self):
        self._items = {}

    def add(self, name, qty):
        if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
            raise ValueError("qty must be a positive integer")
        self._items[name] = self._items.get(name, 0) + qty

    def remove(self, name, qty):
        if name not in self._items:
            raise KeyError(name)
        if not isinstance(qty, int) or qty <= 0 or qty > self._items[name]:
            raise ValueError("bad quantity")
        self._items[name] -= qty
        if self._items[name] == 0:
            del self._items[name]

    def quantity(self, name):
        return self._items.get(name, 0)

    def low_stock(self, threshold):
        return sorted(n for n, q in self._items.items() if q < threshold)
