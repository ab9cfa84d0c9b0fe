"""Syntax of the SAS-like selection language: tokens, the expression tree and its parser.

The grammar and the meaning are documented in :mod:`xsa_enhance.events.expression`, which
evaluates the tree built here. :func:`parse_tree` turns a text into the tree (nodes ``_Num``,
``_Col``, ``_Neg``, ``_Bit``, ``_Cmp``, ``_In``, ``_Not``, ``_Logic``) or raises
:class:`ExpressionError` with the 0-based character position of the problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

from xsa_enhance.errors import ConfigError

__all__ = ["ExpressionError", "parse_tree"]

_MAX_DEPTH = 64
_MAX_LENGTH = 10_000


class ExpressionError(ConfigError):
    """A selection expression that cannot be parsed or evaluated.

    Parameters
    ----------
    text : str
        The expression.
    position : int or None
        0-based character position of the problem, when it has one.
    reason : str
        What is wrong.
    """

    def __init__(self, text: str, position: int | None, reason: str) -> None:
        self.text = text
        self.position = position
        self.reason = reason
        where = f" at position {position}" if position is not None else ""
        shown = text if len(text) <= 200 else text[:197] + "..."
        super().__init__(f"invalid selection expression{where}: {reason}: {shown!r}")



# --------------------------------------------------------------------------- tokens

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<hex>0[xX][0-9A-Fa-f]+(?![0-9A-Za-z_.]))
  | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?(?![0-9A-Za-z_.]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||==|!=|<=|>=|<|>|!|&|\||\(|\)|\[|\]|:|-|\+)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # "num", "name", "op", "in", "end"
    value: object
    pos: int = field(compare=False)


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise ExpressionError(text, pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup
        s = m.group()
        if kind == "hex":
            toks.append(_Tok("num", int(s, 16), pos))
        elif kind == "num":
            if any(c in s for c in ".eE"):
                toks.append(_Tok("num", float(s), pos))
            else:
                toks.append(_Tok("num", int(s), pos))
        elif kind == "name":
            if s.lower() == "in":
                toks.append(_Tok("in", s, pos))
            else:
                toks.append(_Tok("name", s.upper(), pos))
        elif kind == "op":
            toks.append(_Tok("op", s, pos))
        pos = m.end()
    toks.append(_Tok("end", None, n))
    return toks


# --------------------------------------------------------------------------- tree

Number = Union[int, float]


@dataclass(frozen=True)
class _Num:
    value: Number
    pos: int = field(compare=False)


@dataclass(frozen=True)
class _Col:
    name: str
    pos: int = field(compare=False)


@dataclass(frozen=True)
class _Unary:
    """An operator on one operand (``arg``)."""

    arg: "_NumNode | _BoolNode"
    pos: int = field(compare=False)


@dataclass(frozen=True)
class _Binary:
    """An operator ``op`` on two numbers (``left``, ``right``)."""

    op: str
    left: "_NumNode"
    right: "_NumNode"
    pos: int = field(compare=False)


@dataclass(frozen=True)
class _Neg(_Unary):
    """``-arg`` of a number."""


@dataclass(frozen=True)
class _Bit(_Binary):
    """``left & right`` or ``left | right`` of integers."""


@dataclass(frozen=True)
class _Cmp(_Binary):
    """A comparison (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``)."""


@dataclass(frozen=True)
class _In:
    arg: "_NumNode"
    lo: Number
    hi: Number
    lo_closed: bool
    hi_closed: bool
    pos: int = field(compare=False)


@dataclass(frozen=True)
class _Not(_Unary):
    """``!arg`` of a condition."""


@dataclass(frozen=True)
class _Logic:
    op: str  # "&&" or "||"
    args: tuple["_BoolNode", ...]
    pos: int = field(compare=False)


_NumNode = Union[_Num, _Col, _Neg, _Bit]
_BoolNode = Union[_Cmp, _In, _Not, _Logic]


def _is_bool(node: object) -> bool:
    return isinstance(node, (_Cmp, _In, _Not, _Logic))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0

    # helpers
    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def error(self, tok: _Tok, reason: str) -> ExpressionError:
        return ExpressionError(self.text, tok.pos, reason)

    def is_op(self, *ops: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.value in ops

    def expect_op(self, op: str, what: str) -> _Tok:
        tok = self.peek()
        if not (tok.kind == "op" and tok.value == op):
            raise self.error(tok, f"expected {what}, found {_describe(tok)}")
        return self.next()

    def enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error(tok, f"expression nested more than {_MAX_DEPTH} levels deep")

    def leave(self) -> None:
        self.depth -= 1

    # grammar
    def parse(self) -> _BoolNode:
        if len(self.text) > _MAX_LENGTH:
            raise ExpressionError(self.text, None, f"longer than {_MAX_LENGTH} characters")
        if self.peek().kind == "end":
            raise self.error(self.peek(), "empty expression")
        node = self.logic("||")
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(tok, f"unexpected {_describe(tok)}")
        if not _is_bool(node):
            raise ExpressionError(
                self.text, 0, "the expression is a number, not a condition (add a comparison)"
            )
        return node  # type: ignore[return-value]

    def logic(self, op: str):
        """``or_expr`` (``op == "||"``, operands ``and_expr``) or ``and_expr`` (``"&&"``,
        operands ``not_expr``): conditions joined by ``op``, flattened into one node."""
        first = self.peek()
        # the operand rule is called inline (no helper frame): deep nesting recurses here
        node = self.logic("&&") if op == "||" else self.not_expr()
        args = [node]
        while self.is_op(op):
            optok = self.next()
            self.need_bool(args[0], optok, "left")
            rhs = self.logic("&&") if op == "||" else self.not_expr()
            self.need_bool(rhs, optok, "right")
            args.append(rhs)
        if len(args) == 1:
            return node
        return _Logic(op, tuple(args), first.pos)

    def need_bool(self, node, optok: _Tok, side: str) -> None:
        if not _is_bool(node):
            raise self.error(
                optok, f"the {side} side of {optok.value!r} is a number, not a condition"
            )

    def not_expr(self):
        tok = self.peek()
        if self.is_op("!"):
            self.next()
            self.enter(tok)
            arg = self.not_expr()
            self.leave()
            if not _is_bool(arg):
                raise self.error(tok, "'!' needs a condition, not a number")
            return _Not(arg, tok.pos)
        return self.comparison()

    def comparison(self):
        left = self.bits("|")
        tok = self.peek()
        if tok.kind == "op" and tok.value in ("==", "!=", "<", "<=", ">", ">="):
            self.next()
            right = self.bits("|")
            for side, node in (("left", left), ("right", right)):
                if _is_bool(node):
                    raise self.error(tok, f"the {side} side of {tok.value!r} is a condition")
            return _Cmp(str(tok.value), left, right, tok.pos)
        if tok.kind == "in":
            self.next()
            if _is_bool(left):
                raise self.error(tok, "'in' needs a number on its left, not a condition")
            open_tok = self.peek()
            if not self.is_op("[", "("):
                raise self.error(open_tok, f"expected '[' or '(' after 'in', found {_describe(open_tok)}")
            self.next()
            lo = self.signed_number()
            self.expect_op(":", "':' in the range")
            hi = self.signed_number()
            close_tok = self.peek()
            if not self.is_op("]", ")"):
                raise self.error(close_tok, f"expected ']' or ')' closing the range, found {_describe(close_tok)}")
            self.next()
            if lo > hi:
                raise self.error(open_tok, f"empty range: lower bound {lo} above upper bound {hi}")
            return _In(left, lo, hi, open_tok.value == "[", close_tok.value == "]", tok.pos)
        return left

    def signed_number(self) -> Number:
        sign = 1
        while self.is_op("-", "+"):
            if self.next().value == "-":
                sign = -sign
        tok = self.peek()
        if tok.kind != "num":
            raise self.error(tok, f"expected a number, found {_describe(tok)}")
        self.next()
        return sign * tok.value  # type: ignore[operator]

    def bits(self, op: str):
        """``bit_or`` (``op == "|"``, operands ``bit_and``) or ``bit_and`` (``"&"``, operands
        ``unary``): integers joined left to right by ``op``."""
        node = self.bits("&") if op == "|" else self.unary()
        entered = 0
        while self.is_op(op):
            tok = self.next()
            self.enter(tok)  # each operator nests the tree one level deeper
            entered += 1
            rhs = self.bits("&") if op == "|" else self.unary()
            node = _Bit(op, self.need_int(node, tok), self.need_int(rhs, tok), tok.pos)
        self.depth -= entered
        return node

    def need_int(self, node, tok: _Tok):
        if _is_bool(node):
            raise self.error(tok, f"{tok.value!r} works on integers, not conditions (use '&&'/'||')")
        if isinstance(node, _Num) and not isinstance(node.value, int):
            raise self.error(tok, f"{tok.value!r} needs integers, found {node.value!r}")
        return node

    def unary(self):
        tok = self.peek()
        if self.is_op("-", "+"):
            self.next()
            self.enter(tok)
            arg = self.unary()
            self.leave()
            if _is_bool(arg):
                raise self.error(tok, f"{tok.value!r} needs a number, not a condition")
            if tok.value == "+":
                return arg
            if isinstance(arg, _Num):
                return _Num(-arg.value, tok.pos)
            return _Neg(arg, tok.pos)
        return self.primary()

    def primary(self):
        tok = self.peek()
        if tok.kind == "num":
            self.next()
            return _Num(tok.value, tok.pos)  # type: ignore[arg-type]
        if tok.kind == "name":
            self.next()
            return _Col(str(tok.value), tok.pos)
        if self.is_op("("):
            self.next()
            self.enter(tok)
            node = self.logic("||")
            self.leave()
            self.expect_op(")", f"')' closing the '(' at position {tok.pos}")
            return node
        raise self.error(tok, f"expected a number, a column or '(', found {_describe(tok)}")


def _describe(tok: _Tok) -> str:
    if tok.kind == "end":
        return "the end of the expression"
    if tok.kind == "in":
        return "'in'"
    return repr(tok.value) if tok.kind != "name" else f"column {tok.value}"


def parse_tree(text: str) -> _BoolNode:
    """Parse a selection expression into its tree.

    Parameters
    ----------
    text : str
        The expression.

    Returns
    -------
    tree
        The root node, a condition.

    Raises
    ------
    ExpressionError
        On any syntax or type error, naming the 0-based position.
    """
    return _Parser(text).parse()
