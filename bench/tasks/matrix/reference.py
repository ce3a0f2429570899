def identity(n):
    if n < 1:
        raise ValueError("n must be at least 1")
    return [[1 if i == j else 0 for j in range(n)] for i in range(n)]


def transpose(m):
    return [list(col) for col in zip(*m, strict=True)]


def multiply(a, b):
    if not a or not b or len(a[0]) != len(b):
        raise ValueError("shapes do not match")
    cols = transpose(b)
    return [[sum(x * y for x, y in zip(row, col, strict=True)) for col in cols] for row in a]


def determinant(m):
    n = len(m)
    if n == 0 or any(len(row) != n for row in m):
        raise ValueError("determinant needs a non-empty square matrix")
    if n == 1:
        return m[0][0]
    total = 0
    for j in range(n):
        minor = [row[:j] + row[j + 1:] for row in m[1:]]
        total += (-1) ** j * m[0][j] * determinant(minor)
    return total
