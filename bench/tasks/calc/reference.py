import re

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def tokenize(expr):
    tokens = []
    for num, other in re.findall(r"(\d+)|(\S)", expr):
        if num:
            tokens.append(num)
        elif other in "+-*/()":
            tokens.append(other)
        else:
            raise ValueError(f"bad character {other!r}")
    return tokens


def to_rpn(tokens):
    out, stack = [], []
    for tok in tokens:
        if tok.isdigit():
            out.append(tok)
        elif tok in _PREC:
            while stack and stack[-1] in _PREC and _PREC[stack[-1]] >= _PREC[tok]:
                out.append(stack.pop())
            stack.append(tok)
        elif tok == "(":
            stack.append(tok)
        elif tok == ")":
            while stack and stack[-1] != "(":
                out.append(stack.pop())
            if not stack:
                raise ValueError("mismatched parentheses")
            stack.pop()
        else:
            raise ValueError(f"bad token {tok!r}")
    while stack:
        tok = stack.pop()
        if tok == "(":
            raise ValueError("mismatched parentheses")
        out.append(tok)
    return out


def eval_rpn(tokens):
    stack = []
    for tok in tokens:
        if tok in _PREC:
            if len(stack) < 2:
                raise ValueError("too few operands")
            b, a = stack.pop(), stack.pop()
            if tok == "+":
                stack.append(a + b)
            elif tok == "-":
                stack.append(a - b)
            elif tok == "*":
                stack.append(a * b)
            else:
                stack.append(a / b)
        else:
            stack.append(float(tok))
    if len(stack) != 1:
        raise ValueError("not a single expression")
    return float(stack[0])


def evaluate(expr):
    return eval_rpn(to_rpn(tokenize(expr)))
