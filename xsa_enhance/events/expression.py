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

The syntax (tokens, tree, parser) is in :mod:`xsa_enhance.events.expression_syntax`; this
module evaluates the tree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from xsa_enhance.events.expression_syntax import (
    ExpressionError,
    Number,
    _Binary,
    _Bit,
    _BoolNode,
    _Cmp,
    _Col,
    _In,
    _Logic,
    _Neg,
    _Not,
    _Num,
    _Unary,
    parse_tree,
)

__all__ = ["Expression", "ExpressionError", "parse_expression", "DEFAULT_EXPRESSION"]

logger = logging.getLogger(__name__)

#: The screening expression of the paper (Sweere et al. 2022) for EPIC-pn images.
DEFAULT_EXPRESSION: str = (
    "PI > 300 && RAWY > 12 && PATTERN <= 4 && ((FLAG == 0) || ((FLAG & 0x10000) != 0))"
)


# --------------------------------------------------------------------------- evaluation


def _columns_of(node: object, out: set[str]) -> None:
    if isinstance(node, _Col):
        out.add(node.name)
    elif isinstance(node, _Unary):
        _columns_of(node.arg, out)
    elif isinstance(node, _Binary):
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
    return Expression(text, parse_tree(text))
