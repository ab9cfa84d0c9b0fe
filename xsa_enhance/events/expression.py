"""A small, safe SAS-like selection language for event lists.

The language covers what ``evselect`` expressions for EPIC-pn screening use::

    PI > 300 && RAWY > 12 && PATTERN <= 4 && ((FLAG == 0) || ((FLAG & 0x10000) != 0))
    PI in [500:2000]

Grammar (lowest precedence first)::

    expr        := or_expr
    or_expr     := and_expr ( '||' and_expr )*
    and_expr    := not_expr ( '&&' not_expr )*
    not_expr    := '!' not_expr | comparison
    comparison  := bit_or ( CMP bit_or )?          CMP: == != < <= > >=
                 | bit_or 'in' RANGE                RANGE: [a:b] (a:b) [a:b) (a:b]
    bit_or      := bit_and ( '|' bit_and )*
    bit_and     := unary ( '&' unary )*
    unary       := '-' unary | '+' unary | primary
    primary     := NUMBER | COLUMN | '(' expr ')'

``[a:b]`` includes both bounds (as in SAS), a round bracket excludes that bound. Numbers are
decimal integers, decimal floats (``1.5``, ``1e3``) or hexadecimal integers (``0x10000``).
Column names are case-insensitive and stored upper-case. ``T``/``true`` and ``F``/``false`` are
not part of the language. Everything is parsed by a tokenizer and a recursive-descent parser
into a small tree that evaluates with numpy; nothing is passed to :func:`eval`.

Every syntax or type error raises :class:`ExpressionError` with the 0-based character position.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from xsa_enhance.errors import ConfigError

__all__ = ["Expression", "ExpressionError", "parse_expression", "DEFAULT_EXPRESSION"]

logger = logging.getLogger(__name__)

#: The screening expression of the paper (Sweere et al. 2022) for EPIC-pn images.
DEFAULT_EXPRESSION: str = (
    "PI > 300 && RAWY > 12 && PATTERN <= 4 && ((FLAG == 0) || ((FLAG & 0x10000) != 0))"
)

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
class _Neg:
    arg: "_NumNode"
    pos: int = field(compare=False)


@dataclass(frozen=True)
class _Bit:
    op: str  # "&" or "|"
    left: "_NumNode"
    right: "_NumNode"
    pos: int = field(compare=False)


@dataclass(frozen=True)
class _Cmp:
    op: str
    left: "_NumNode"
    right: "_NumNode"
    pos: int = field(compare=False)


@dataclass(frozen=True)
class _In:
    arg: "_NumNode"
    lo: Number
    hi: Number
    lo_closed: bool
    hi_closed: bool
    pos: int = field(compare=False)


@dataclass(frozen=True)
class _Not:
    arg: "_BoolNode"
    pos: int = field(compare=False)


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
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(tok, f"unexpected {_describe(tok)}")
        if not _is_bool(node):
            raise ExpressionError(
                self.text, 0, "the expression is a number, not a condition (add a comparison)"
            )
        return node  # type: ignore[return-value]

    def or_expr(self):
        first = self.peek()
        node = self.and_expr()
        args = [node]
        while self.is_op("||"):
            optok = self.next()
            self.need_bool(args[0], optok, "left")
            rhs = self.and_expr()
            self.need_bool(rhs, optok, "right")
            args.append(rhs)
        if len(args) == 1:
            return node
        return _Logic("||", tuple(args), first.pos)

    def and_expr(self):
        first = self.peek()
        node = self.not_expr()
        args = [node]
        while self.is_op("&&"):
            optok = self.next()
            self.need_bool(args[0], optok, "left")
            rhs = self.not_expr()
            self.need_bool(rhs, optok, "right")
            args.append(rhs)
        if len(args) == 1:
            return node
        return _Logic("&&", tuple(args), first.pos)

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
        left = self.bit_or()
        tok = self.peek()
        if tok.kind == "op" and tok.value in ("==", "!=", "<", "<=", ">", ">="):
            self.next()
            right = self.bit_or()
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

    def bit_or(self):
        node = self.bit_and()
        entered = 0
        while self.is_op("|"):
            tok = self.next()
            self.enter(tok)  # each operator nests the tree one level deeper
            entered += 1
            rhs = self.bit_and()
            node = _Bit("|", self.need_int(node, tok), self.need_int(rhs, tok), tok.pos)
        self.depth -= entered
        return node

    def bit_and(self):
        node = self.unary()
        entered = 0
        while self.is_op("&"):
            tok = self.next()
            self.enter(tok)
            entered += 1
            rhs = self.unary()
            node = _Bit("&", self.need_int(node, tok), self.need_int(rhs, tok), tok.pos)
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
            node = self.or_expr()
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


# --------------------------------------------------------------------------- evaluation


def _columns_of(node: object, out: set[str]) -> None:
    if isinstance(node, _Col):
        out.add(node.name)
    elif isinstance(node, (_Neg, _Not)):
        _columns_of(node.arg, out)
    elif isinstance(node, (_Bit, _Cmp)):
        _columns_of(node.left, out)
        _columns_of(node.right, out)
    elif isinstance(node, _In):
        _columns_of(node.arg, out)
    elif isinstance(node, _Logic):
        for a in node.args:
            _columns_of(a, out)


def _fits(value: Number, dtype: np.dtype) -> bool:
    """Whether a Python number can be used against an array of ``dtype`` without overflow."""
    if dtype.kind in "iu":
        if not isinstance(value, int):
            return False
        info = np.iinfo(dtype)
        return info.min <= value <= info.max
    if dtype.kind == "f":
        try:
            return bool(float(dtype.type(value)) == value) or not np.isfinite(value)
        except (OverflowError, ValueError):
            return False
    return False


def _widen(arr: np.ndarray, value: Number) -> np.ndarray:
    """Cast ``arr`` so that comparing or combining it with ``value`` is exact."""
    if _fits(value, arr.dtype):
        return arr
    if isinstance(value, int) and arr.dtype.kind in "iub" and -(2**63) <= value < 2**63:
        return arr.astype(np.int64)
    return arr.astype(np.float64)


def _as_number(value: Number) -> Number:
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return float(value)
    return value


class Expression:
    """A parsed selection expression.

    Build one with :func:`parse_expression`. ``str(expr)`` is the original text.

    Attributes
    ----------
    text : str
        The expression as given.
    columns : frozenset of str
        Upper-case column names the expression reads.
    """

    def __init__(self, text: str, tree: _BoolNode) -> None:
        self.text = text
        self._tree = tree
        cols: set[str] = set()
        _columns_of(tree, cols)
        self.columns: frozenset[str] = frozenset(cols)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other._tree == self._tree

    def __hash__(self) -> int:
        return hash(self._tree)

    def evaluate(self, columns: Mapping[str, np.ndarray], *, length: int | None = None) -> np.ndarray:
        """Evaluate the expression on event columns.

        Parameters
        ----------
        columns : mapping of str to ndarray
            1-D arrays of equal length, keyed by column name (any case).
        length : int, optional
            Number of rows; needed only when the expression reads no column.

        Returns
        -------
        ndarray of bool
            ``True`` for the rows the expression selects.

        Raises
        ------
        ExpressionError
            A column is missing, or an operation does not suit its column's type (bit masks on
            a floating-point column).
        """
        upper = {str(k).upper(): v for k, v in columns.items()}
        missing = sorted(self.columns - set(upper))
        if missing:
            raise ExpressionError(
                self.text,
                None,
                f"unknown column(s) {', '.join(missing)} (available: {', '.join(sorted(upper)) or 'none'})",
            )
        if length is None:
            if self.columns:
                length = len(next(iter(upper[c] for c in self.columns)))
            elif upper:
                length = len(next(iter(upper.values())))
            else:
                length = 0
        cols = {c: np.asarray(upper[c]) for c in self.columns}
        for c, a in cols.items():
            if a.ndim != 1 or len(a) != length:
                raise ExpressionError(self.text, None, f"column {c} has shape {a.shape}, expected ({length},)")
            if a.dtype.kind not in "iubf":
                raise ExpressionError(self.text, None, f"column {c} is not numeric ({a.dtype})")
        with np.errstate(all="ignore"):
            out = self._bool(self._tree, cols, length)
        return np.broadcast_to(out, (length,)).copy() if np.ndim(out) == 0 else out

    # evaluation helpers -------------------------------------------------
    def _num(self, node, cols, n):
        if isinstance(node, _Num):
            return _as_number(node.value)
        if isinstance(node, _Col):
            return cols[node.name]
        if isinstance(node, _Neg):
            v = self._num(node.arg, cols, n)
            if isinstance(v, np.ndarray):
                if v.dtype.kind in "iub":
                    v = v.astype(np.int64)
                return np.negative(v)
            return -v
        if isinstance(node, _Bit):
            a = self._num(node.left, cols, n)
            b = self._num(node.right, cols, n)
            for v in (a, b):
                if isinstance(v, float) or (isinstance(v, np.ndarray) and v.dtype.kind == "f"):
                    raise ExpressionError(
                        self.text, node.pos, f"{node.op!r} needs integer columns and numbers"
                    )
            if isinstance(a, np.ndarray) and not isinstance(b, np.ndarray):
                a = _widen(a, b)
            elif isinstance(b, np.ndarray) and not isinstance(a, np.ndarray):
                b = _widen(b, a)
            if node.op == "&":
                return np.bitwise_and(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else a & b
            return np.bitwise_or(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else a | b
        raise AssertionError(node)  # pragma: no cover - the parser builds only these

    def _bool(self, node, cols, n):
        if isinstance(node, _Cmp):
            a = self._num(node.left, cols, n)
            b = self._num(node.right, cols, n)
            if isinstance(a, np.ndarray) and not isinstance(b, np.ndarray):
                a = _widen(a, b)
            elif isinstance(b, np.ndarray) and not isinstance(a, np.ndarray):
                b = _widen(b, a)
            elif isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype != b.dtype:
                a = a.astype(np.float64) if "f" in (a.dtype.kind + b.dtype.kind) else a.astype(np.int64)
                b = b.astype(a.dtype)
            op = {
                "==": np.equal,
                "!=": np.not_equal,
                "<": np.less,
                "<=": np.less_equal,
                ">": np.greater,
                ">=": np.greater_equal,
            }[node.op]
            return op(a, b)
        if isinstance(node, _In):
            a = self._num(node.arg, cols, n)
            lo, hi = _as_number(node.lo), _as_number(node.hi)
            if isinstance(a, np.ndarray):
                a = _widen(_widen(a, lo), hi)
            lo_ok = np.greater_equal(a, lo) if node.lo_closed else np.greater(a, lo)
            hi_ok = np.less_equal(a, hi) if node.hi_closed else np.less(a, hi)
            return np.logical_and(lo_ok, hi_ok, out=lo_ok if isinstance(lo_ok, np.ndarray) else None)
        if isinstance(node, _Not):
            return np.logical_not(self._bool(node.arg, cols, n))
        if isinstance(node, _Logic):
            acc = None
            for arg in node.args:
                v = self._bool(arg, cols, n)
                if acc is None:
                    acc = np.array(v, dtype=bool, copy=True) if np.ndim(v) else v
                elif node.op == "&&":
                    acc = np.logical_and(acc, v, out=acc if isinstance(acc, np.ndarray) and np.ndim(v) <= acc.ndim else None)
                else:
                    acc = np.logical_or(acc, v, out=acc if isinstance(acc, np.ndarray) and np.ndim(v) <= acc.ndim else None)
            return acc
        raise AssertionError(node)  # pragma: no cover


def parse_expression(text: str) -> Expression:
    """Parse a SAS-like selection expression.

    Parameters
    ----------
    text : str
        The expression, e.g. ``"PI in [500:2000] && PATTERN <= 4"``.

    Returns
    -------
    Expression

    Raises
    ------
    ExpressionError
        On any syntax or type error, naming the 0-based position.
    """
    if not isinstance(text, str):
        raise ExpressionError(str(text), None, "the expression must be a string")
    tree = _Parser(text).parse()
    return Expression(text, tree)
