"""The ADQL subset translation and the spherical geometry functions."""

from __future__ import annotations

import math
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xsa_enhance.standin.adql import AdqlError, angular_distance, register_functions, translate_adql


def _conn():
    c = sqlite3.connect(":memory:")
    register_functions(c)
    return c


def test_top_becomes_limit_and_tables_are_schema_qualified():
    sql = translate_adql("SELECT TOP 5 o.observation_id FROM xsa.v_public_observations AS o "
                         "WHERE o.ra > 10 ORDER BY o.ra")
    assert sql.endswith("LIMIT 5")
    assert "TOP" not in sql
    assert "xsa.v_public_observations" in sql


def test_distinct_top_and_not_equal():
    sql = translate_adql("SELECT DISTINCT TOP 2 instrument FROM xsa.v_exposure WHERE filter != 'Thick'")
    assert sql.startswith("SELECT DISTINCT instrument") and sql.endswith("LIMIT 2")
    assert "<>" in sql


@pytest.mark.parametrize("query", [
    "", "   ", "UPDATE xsa.v_exposure SET duration = 0",
    "SELECT * FROM xsa.v_exposure; DROP TABLE x",
    "SELECT * FROM xsa.v_exposure -- comment",
    "SELECT * FROM xsa.v_exposure /* c */",
    "SELECT * FROM xsa.v_exposure WHERE (duration > 1",
    "SELECT 1",
    "SELECT * FROM xsa.v_exposure WHERE 1=CONTAINS(POINT('ICRS',1,2), POLYGON('ICRS',1,2,3,4,5,6))",
    "SELECT * FROM xsa.v_exposure WHERE fancy_function(duration) > 1",
    "SELECT TOP x * FROM xsa.v_exposure",
    "SELECT * FROM xsa.v_exposure OFFSET 3",
    "SELECT * FROM xsa.v_exposure WHERE a = `b`",
])
def test_refused(query):
    with pytest.raises(AdqlError):
        translate_adql(query)


def _sep_cos(ra1, dec1, ra2, dec2):
    r = math.radians
    c = (math.sin(r(dec1)) * math.sin(r(dec2))
         + math.cos(r(dec1)) * math.cos(r(dec2)) * math.cos(r(ra1 - ra2)))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 360), st.floats(-89.9, 89.9), st.floats(0, 360), st.floats(-89.9, 89.9))
def test_angular_distance_matches_law_of_cosines(ra1, dec1, ra2, dec2):
    d = angular_distance(ra1, dec1, ra2, dec2)
    expect = _sep_cos(ra1, dec1, ra2, dec2)
    # the law of cosines loses precision for tiny angles; compare where both are well defined
    assert d == pytest.approx(expect, abs=1e-6) or expect < 1e-3


def test_contains_and_intersects_in_sql():
    c = _conn()
    row = c.execute(
        "SELECT adql_contains(adql_point('ICRS', 10.0, 0.0), adql_circle('ICRS', 10.5, 0.0, 0.6)),"
        " adql_contains(adql_point('ICRS', 10.0, 0.0), adql_circle('ICRS', 10.5, 0.0, 0.4)),"
        " adql_intersects(adql_circle('ICRS', 0.0, 60.0, 0.25), adql_circle('ICRS', 1.0, 60.0, 0.26)),"
        " adql_intersects(adql_circle('ICRS', 0.0, 60.0, 0.25), adql_circle('ICRS', 1.0, 60.0, 0.2)),"
        " adql_distance(adql_point(359.9, 0.0), adql_point(0.1, 0.0))"
    ).fetchone()
    # at dec 60 one degree of RA is 0.5 deg of arc: 0.25 + 0.26 > 0.5 > 0.25 + 0.2
    assert row[:4] == (1, 0, 1, 0)
    assert row[4] == pytest.approx(0.2, abs=1e-9)  # across RA = 0


def test_geometry_refuses_other_frames():
    c = _conn()
    with pytest.raises(sqlite3.OperationalError):
        c.execute("SELECT adql_point('GALACTIC', 1.0, 2.0)").fetchone()


def test_translated_query_runs_on_sqlite():
    c = _conn()
    c.execute("ATTACH DATABASE ':memory:' AS xsa")
    c.execute("CREATE TABLE xsa.v_exposure (observation_id TEXT, duration REAL, filter TEXT)")
    c.executemany("INSERT INTO xsa.v_exposure VALUES (?, ?, ?)",
                  [("0000000001", 10.0, "Thin1"), ("0000000002", 30.0, "Medium"),
                   ("0000000003", 50.0, "Thick"), ("0000000004", None, "Medium")])
    sql = translate_adql(
        "SELECT observation_id FROM xsa.v_exposure WHERE (duration BETWEEN 20 AND 60 "
        "AND filter IN ('Medium', 'Thick')) OR (duration IS NULL AND filter LIKE 'Med%') "
        "ORDER BY observation_id DESC")
    assert [r[0] for r in c.execute(sql)] == ["0000000004", "0000000003", "0000000002"]
    sql = translate_adql("SELECT filter, COUNT(*) AS n FROM xsa.v_exposure GROUP BY filter "
                         "HAVING COUNT(*) > 1")
    assert c.execute(sql).fetchall() == [("Medium", 2)]


_WORDS = st.sampled_from(["SELECT", "TOP", "5", "*", "FROM", "xsa.v_exposure", "xsa", ".",
                          "WHERE", "(", ")", "AND", "OR", "NOT", "=", "'x'", "duration",
                          "CONTAINS", "POINT", "CIRCLE", ",", "ORDER", "BY", "LIMIT", "IN",
                          "BETWEEN", ";", "--", "\"q\"", "1.5e3", "DISTINCT"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_WORDS, max_size=20).map(" ".join)))
def test_translator_never_crashes(query):
    try:
        sql = translate_adql(query)
    except AdqlError:
        return
    assert isinstance(sql, str) and sql.upper().startswith("SELECT")
    assert ";" not in sql and "--" not in sql


# -- only the xsa.* views; a bounded select list ------------------------------------------------


@pytest.mark.parametrize("query", [
    "SELECT name FROM sqlite_master",
    "SELECT sql FROM xsa.sqlite_master",
    "SELECT * FROM main.sqlite_master",
    "SELECT * FROM sqlite_temp_master",
    "SELECT * FROM \"sqlite_master\"",
    "SELECT * FROM xsa.v_exposure, sqlite_master",
    "SELECT * FROM xsa.v_exposure AS e JOIN sqlite_master AS m ON 1=1",
    "SELECT * FROM xsa.v_exposure AS e LEFT OUTER JOIN xsa.secret AS m ON 1=1",
    "SELECT * FROM v_exposure",
    "SELECT * FROM (xsa.v_exposure)",
    "SELECT * FROM",
    "SELECT * FROM xsa.v_exposure,",
])
def test_tables_other_than_the_xsa_views_are_refused(query):
    with pytest.raises(AdqlError, match="table"):
        translate_adql(query)


def test_the_four_views_and_their_joins_are_accepted():
    for q in ("SELECT * FROM xsa.v_public_observations",
              "SELECT * FROM XSA.V_ALL_OBSERVATIONS AS a",
              "SELECT e.mode_friendly_name FROM xsa.v_exposure AS e INNER JOIN "
              "xsa.v_instrument_mode AS m ON e.instrument_mode_oid = m.instrument_mode_oid",
              "SELECT o.ra FROM xsa.v_public_observations o, xsa.v_exposure e "
              "WHERE o.observation_id = e.observation_id ORDER BY o.ra, e.duration"):
        assert "xsa.v_" in translate_adql(q)


def test_sqlite_master_cannot_be_read_through_the_translation():
    # independent check on a real SQLite: the refused query would have run and leaked the schema
    c = _conn()
    c.execute("ATTACH DATABASE ':memory:' AS xsa")
    c.execute("CREATE TABLE xsa.v_exposure (observation_id TEXT)")
    c.execute("CREATE TABLE xsa.secret (password TEXT)")
    assert c.execute("SELECT name FROM xsa.sqlite_master").fetchall()  # SQLite itself would answer
    for q in ("SELECT name FROM xsa.sqlite_master", "SELECT password FROM xsa.secret"):
        with pytest.raises(AdqlError):
            translate_adql(q)


def test_the_select_list_is_capped():
    from xsa_enhance.standin.adql import MAX_SELECT_ITEMS

    ok = "SELECT " + ", ".join(["observation_id"] * MAX_SELECT_ITEMS) + " FROM xsa.v_exposure"
    assert translate_adql(ok).count("observation_id") == MAX_SELECT_ITEMS
    # commas inside function calls and in the FROM/ORDER BY clauses do not count
    translate_adql("SELECT " + ", ".join(["POWER(duration, 2)"] * MAX_SELECT_ITEMS)
                   + " FROM xsa.v_exposure ORDER BY duration, observation_id")
    too_many = "SELECT " + ", ".join(["duration + 1"] * (MAX_SELECT_ITEMS + 1)) + " FROM xsa.v_exposure"
    with pytest.raises(AdqlError, match=f"more than {MAX_SELECT_ITEMS}"):
        translate_adql(too_many)
    huge = "SELECT " + ", ".join(["1"] * 200_000) + " FROM xsa.v_exposure"
    with pytest.raises(AdqlError, match="too many columns"):
        translate_adql(huge)
