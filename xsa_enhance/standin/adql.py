"""Translation of the ADQL subset served by the local archive into SQLite SQL.

The local archive runs real queries on SQLite. ADQL and SQLite share most of the syntax of a
plain ``SELECT``; what differs is translated here, token by token, and everything outside the
supported subset is refused with :class:`AdqlError` (sent back as an ADQL error VOTable).

Supported: ``SELECT [ALL|DISTINCT] [TOP n] columns | * | expressions [AS alias]``,
``FROM`` the ``xsa.*`` tables with aliases, ``[INNER|LEFT [OUTER]] JOIN ... ON`` and comma
joins, ``WHERE`` with comparisons, ``AND``/``OR``/``NOT``, ``BETWEEN``, ``IN (...)``,
``LIKE``, ``IS [NOT] NULL``, ``GROUP BY``/``HAVING``, ``ORDER BY ... [ASC|DESC]``, arithmetic,
the aggregates ``COUNT``/``MIN``/``MAX``/``AVG``/``SUM``, a few maths functions and the
geometry ``POINT``, ``CIRCLE``, ``CONTAINS``, ``INTERSECTS`` and ``DISTANCE`` (ICRS, degrees).
Not supported: sub-queries, ``UNION``/``INTERSECT``/``EXCEPT``, ``BOX``/``POLYGON``/``REGION``,
``OFFSET``, ``LIMIT`` (not ADQL: use ``TOP``), comments, several statements.
"""

from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass

__all__ = ["AdqlError", "translate_adql", "register_functions", "TABLES", "MAX_SELECT_ITEMS"]

#: The tables the local archive knows, as ADQL sees them.
TABLES = (
    "xsa.v_public_observations",
    "xsa.v_all_observations",
    "xsa.v_exposure",
    "xsa.v_instrument_mode",
)


class AdqlError(Exception):
    """A query outside the supported ADQL subset, or one the database rejected."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "number", "string", "qident", "op"
    text: str


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<qident>"(?:[^"]|"")+")
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|\|\||[-+*/%=<>(),.])
  | (?P<bad>.)
    """,
    re.VERBOSE | re.DOTALL,
)

_KEYWORDS = {
    "SELECT", "ALL", "DISTINCT", "TOP", "FROM", "AS", "JOIN", "INNER", "LEFT", "RIGHT",
    "FULL", "OUTER", "NATURAL", "ON", "USING", "WHERE", "AND", "OR", "NOT", "BETWEEN", "IN",
    "LIKE", "IS", "NULL", "ORDER", "BY", "ASC", "DESC", "GROUP", "HAVING", "CASE", "WHEN",
    "THEN", "ELSE", "END", "TRUE", "FALSE",
}
_REFUSED = {
    "UNION": "UNION is not supported",
    "INTERSECT": "INTERSECT is not supported",
    "EXCEPT": "EXCEPT is not supported",
    "LIMIT": "LIMIT is not ADQL; use SELECT TOP n",
    "OFFSET": "OFFSET is not supported",
    "INSERT": "only SELECT queries are allowed",
    "UPDATE": "only SELECT queries are allowed",
    "DELETE": "only SELECT queries are allowed",
    "DROP": "only SELECT queries are allowed",
    "CREATE": "only SELECT queries are allowed",
    "ALTER": "only SELECT queries are allowed",
    "ATTACH": "only SELECT queries are allowed",
    "PRAGMA": "only SELECT queries are allowed",
    "WITH": "WITH (common table expressions) is not supported",
    "RIGHT": "RIGHT JOIN is not supported",
    "FULL": "FULL JOIN is not supported",
}
#: ADQL function name -> SQLite function name.
_FUNCTIONS = {
    "COUNT": "COUNT", "MIN": "MIN", "MAX": "MAX", "AVG": "AVG", "SUM": "SUM",
    "ABS": "ABS", "ROUND": "ROUND", "LOWER": "LOWER", "UPPER": "UPPER",
    "SQRT": "adql_sqrt", "SIN": "adql_sin", "COS": "adql_cos", "TAN": "adql_tan",
    "RADIANS": "adql_radians", "DEGREES": "adql_degrees", "FLOOR": "adql_floor",
    "CEILING": "adql_ceiling", "LOG10": "adql_log10", "POWER": "adql_power",
    "POINT": "adql_point", "CIRCLE": "adql_circle", "CONTAINS": "adql_contains",
    "INTERSECTS": "adql_intersects", "DISTANCE": "adql_distance",
    "COALESCE": "COALESCE",
}
_GEOMETRY_REFUSED = {"BOX", "POLYGON", "REGION", "AREA", "CENTROID", "COORD1", "COORD2",
                     "COORDSYS"}
_TABLE_NAMES = {t.lower(): t for t in TABLES}
#: At most this many columns/expressions in the select list (a longer list is refused at once
#: instead of keeping the server busy for a minute).
MAX_SELECT_ITEMS = 500
_END_OF_FROM = {"WHERE", "GROUP", "ORDER", "HAVING"}


def _tokenize(query: str) -> list[_Token]:
    if "--" in re.sub(r"'(?:[^']|'')*'", "''", query) or "/*" in query:
        raise AdqlError("comments are not supported")
    tokens: list[_Token] = []
    for m in _TOKEN_RE.finditer(query):
        kind = m.lastgroup
        assert kind is not None
        if kind == "ws":
            continue
        if kind == "bad":
            raise AdqlError(f"unexpected character {m.group()!r} at position {m.start()}")
        tokens.append(_Token(kind, m.group()))
    return tokens


def translate_adql(query: str) -> str:
    """Translate a query of the supported ADQL subset into SQLite SQL.

    Parameters
    ----------
    query : str
        The ADQL query.

    Returns
    -------
    str
        SQLite SQL that runs against a connection on which :func:`register_functions` was
        called and the archive database is attached as schema ``xsa``.

    Raises
    ------
    AdqlError
        When the query is empty, not a single ``SELECT``, or uses unsupported ADQL.
    """
    tokens = _tokenize(query.strip().rstrip(";").strip() if query else "")
    if not tokens:
        raise AdqlError("empty query")
    if ";" in query.strip().rstrip(";"):
        raise AdqlError("only one statement per query is supported")
    if tokens[0].kind != "word" or tokens[0].text.upper() != "SELECT":
        raise AdqlError("the query must start with SELECT")
    out: list[str] = []
    top: int | None = None
    depth = 0
    saw_from = False
    select_items = 1  # columns/expressions in the select list (top-level commas + 1)
    in_from = False  # between FROM and WHERE/GROUP BY/ORDER BY/HAVING
    expect_table = False  # the next token must start a table reference
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        up = tok.text.upper()
        if expect_table:
            # Only the archive's xsa.* views can be queried: no sqlite_master, no other schema,
            # no quoted names, no table-valued functions, no derived tables.
            name = (f"{tok.text}.{tokens[i + 2].text}" if i + 2 < n and tok.kind == "word"
                    and tokens[i + 1].text == "." and tokens[i + 2].kind == "word" else tok.text)
            if tok.text == "(" and i + 1 < n and tokens[i + 1].text.upper() == "SELECT":
                raise AdqlError("sub-queries are not supported")
            if name.lower() not in _TABLE_NAMES:
                raise AdqlError(f"unknown table {name[:60]!r}: only {', '.join(TABLES)} can be "
                                "queried")
            expect_table = False
        if tok.kind == "word":
            nxt = tokens[i + 1] if i + 1 < n else None
            if up in _REFUSED:
                raise AdqlError(_REFUSED[up])
            if up == "SELECT" and i != 0:
                raise AdqlError("sub-queries are not supported")
            if up == "TOP":
                if top is not None or saw_from:
                    raise AdqlError("TOP must follow SELECT [ALL|DISTINCT] once")
                if nxt is None or nxt.kind != "number" or not nxt.text.isdigit():
                    raise AdqlError("TOP needs a non-negative integer")
                top = int(nxt.text)
                i += 2
                continue
            if up == "FROM" and depth == 0:
                saw_from = True
                in_from = expect_table = True
            elif up == "JOIN" and in_from and depth == 0:
                expect_table = True
            elif up in _END_OF_FROM and depth == 0:
                in_from = False
            if nxt is not None and nxt.text == "(" and up not in _KEYWORDS:
                if up in _GEOMETRY_REFUSED:
                    raise AdqlError(f"the ADQL function {up} is not supported")
                if up not in _FUNCTIONS:
                    raise AdqlError(f"unknown or unsupported function {tok.text}")
                out.append(_FUNCTIONS[up])
                i += 1
                continue
            # Schema-qualified table name: xsa . v_xxx
            if (i + 2 < n and tokens[i + 1].text == "." and tokens[i + 2].kind == "word"
                    and f"{tok.text}.{tokens[i + 2].text}".lower() in _TABLE_NAMES):
                out.append(f"xsa.{tokens[i + 2].text.lower()}")
                i += 3
                continue
            if up == "TRUE":
                out.append("'true'")
            elif up == "FALSE":
                out.append("'false'")
            else:
                out.append(tok.text)
        elif tok.kind == "op":
            if tok.text == "(":
                depth += 1
            elif tok.text == ")":
                depth -= 1
                if depth < 0:
                    raise AdqlError("unbalanced parentheses")
            elif tok.text == "," and depth == 0:
                if in_from:
                    expect_table = True  # comma join
                elif not saw_from:
                    select_items += 1
                    if select_items > MAX_SELECT_ITEMS:
                        raise AdqlError(f"too many columns or expressions in the select list "
                                        f"(more than {MAX_SELECT_ITEMS})")
            if tok.text == "!=":
                out.append("<>")
            else:
                out.append(tok.text)
        else:
            out.append(tok.text)
        i += 1
    if depth != 0:
        raise AdqlError("unbalanced parentheses")
    if not saw_from:
        raise AdqlError("the query needs a FROM clause")
    if expect_table:
        raise AdqlError("a table name must follow FROM, JOIN or a comma in the FROM clause")
    sql = _join(out)
    if top is not None:
        sql += f" LIMIT {top}"
    return sql


def _join(parts: list[str]) -> str:
    text = ""
    for part in parts:
        if not text:
            text = part
        elif part in {".", ")", ","} or text.endswith(".") or text.endswith("("):
            text += part
        elif part == "(" and re.search(r"[A-Za-z0-9_]$", text):
            text += part
        else:
            text += " " + part
    return text


# --------------------------------------------------------------------------------------------
# Geometry on the sphere (ICRS degrees). Values travel between functions as short strings.


def _parse_shape(value: object) -> tuple[str, tuple[float, ...]]:
    if not isinstance(value, str):
        raise ValueError(f"not a geometry: {value!r}")
    parts = value.split()
    kind = parts[0].upper()
    if parts[1:2] and not _is_number(parts[1]):
        parts = [parts[0]] + parts[2:]  # drop the frame ("ICRS")
    nums = tuple(float(p) for p in parts[1:])
    if kind == "POINT" and len(nums) == 2 or kind == "CIRCLE" and len(nums) == 3:
        return kind, nums
    raise ValueError(f"not a geometry: {value!r}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_frame(frame: object) -> None:
    if frame is not None and str(frame).strip().upper() not in {"", "ICRS", "J2000", "FK5"}:
        raise ValueError(f"unsupported coordinate system {frame!r}")


def _point(*args: object) -> str | None:
    if len(args) == 3:
        _check_frame(args[0])
        args = args[1:]
    if len(args) != 2:
        raise ValueError("POINT takes ([frame,] ra, dec)")
    ra, dec = args
    if ra is None or dec is None:
        return None
    return f"POINT ICRS {float(ra)!r} {float(dec)!r}"  # type: ignore[arg-type]


def _circle(*args: object) -> str | None:
    if len(args) == 4:
        _check_frame(args[0])
        args = args[1:]
    if len(args) != 3:
        raise ValueError("CIRCLE takes ([frame,] ra, dec, radius)")
    ra, dec, radius = args
    if ra is None or dec is None or radius is None:
        return None
    return f"CIRCLE ICRS {float(ra)!r} {float(dec)!r} {float(radius)!r}"


def angular_distance(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle distance in degrees (haversine) between two ICRS positions in degrees."""
    p1, p2 = math.radians(dec1), math.radians(dec2)
    dp = p2 - p1
    dl = math.radians(ra2 - ra1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def _contains(a: str | None, b: str | None) -> int | None:
    if a is None or b is None:
        return None
    ka, va = _parse_shape(a)
    kb, vb = _parse_shape(b)
    if kb != "CIRCLE":
        raise ValueError("CONTAINS needs a CIRCLE as its second argument")
    d = angular_distance(va[0], va[1], vb[0], vb[1])
    if ka == "POINT":
        return int(d <= vb[2])
    return int(d + va[2] <= vb[2])


def _intersects(a: str | None, b: str | None) -> int | None:
    if a is None or b is None:
        return None
    ka, va = _parse_shape(a)
    kb, vb = _parse_shape(b)
    ra = va[2] if ka == "CIRCLE" else 0.0
    rb = vb[2] if kb == "CIRCLE" else 0.0
    return int(angular_distance(va[0], va[1], vb[0], vb[1]) <= ra + rb)


def _distance(a: str | None, b: str | None) -> float | None:
    if a is None or b is None:
        return None
    _, va = _parse_shape(a)
    _, vb = _parse_shape(b)
    return angular_distance(va[0], va[1], vb[0], vb[1])


def _num(fn):
    def wrapped(*args):
        if any(a is None for a in args):
            return None
        return fn(*(float(a) for a in args))

    return wrapped


def register_functions(conn: sqlite3.Connection) -> None:
    """Register the ADQL geometry and maths functions on a SQLite connection.

    Parameters
    ----------
    conn : sqlite3.Connection
        The connection the translated queries run on.
    """
    conn.create_function("adql_point", -1, _point, deterministic=True)
    conn.create_function("adql_circle", -1, _circle, deterministic=True)
    conn.create_function("adql_contains", 2, _contains, deterministic=True)
    conn.create_function("adql_intersects", 2, _intersects, deterministic=True)
    conn.create_function("adql_distance", 2, _distance, deterministic=True)
    conn.create_function("adql_sqrt", 1, _num(math.sqrt), deterministic=True)
    conn.create_function("adql_sin", 1, _num(math.sin), deterministic=True)
    conn.create_function("adql_cos", 1, _num(math.cos), deterministic=True)
    conn.create_function("adql_tan", 1, _num(math.tan), deterministic=True)
    conn.create_function("adql_radians", 1, _num(math.radians), deterministic=True)
    conn.create_function("adql_degrees", 1, _num(math.degrees), deterministic=True)
    conn.create_function("adql_floor", 1, _num(math.floor), deterministic=True)
    conn.create_function("adql_ceiling", 1, _num(math.ceil), deterministic=True)
    conn.create_function("adql_log10", 1, _num(math.log10), deterministic=True)
    conn.create_function("adql_power", 2, _num(math.pow), deterministic=True)
