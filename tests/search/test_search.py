"""Search quality and upkeep, on SQLite (FTS5) and PostgreSQL (tsvector + pg_trgm)."""

from __future__ import annotations

import pytest
from sqlalchemy import MetaData, Table, delete, insert, update

from bastion import Runtime
from bastion.search import Hit, SearchIndex
from tests.search.apps import index, products


def search(runtime: Runtime, text: str, **options: object) -> list[Hit]:
    with runtime.database.read_transaction() as session:
        return index.search(session, text, **options)  # type: ignore[arg-type]


def keys(runtime: Runtime, text: str, **options: object) -> list[int]:
    return [hit.key for hit in search(runtime, text, **options)]


#: (query, expected leading groups): each group is a set of keys, in any order among
#: themselves, that must come before the next group. Typos and prefixes included.
QUALITY: list[tuple[str, list[set[int]]]] = [
    ("chocolate", [{1, 2, 21, 29}]),
    ("dark chocolate", [{1}, {29}]),
    ("chocolat", [{1, 2, 21, 29}]),  # typo (missing e)
    ("choc", [{1, 2, 21, 29}]),  # prefix: search-as-you-type
    ("blak coffee", [{3}]),  # typo in the first word
    ("black coffee", [{3}]),
    ("coffee", [{3, 4, 20}, {19}]),  # names first, then the description match
    ("headphnes", [{6}]),  # typo
    ("headphones", [{6}, {7, 30}]),  # the name outranks the two descriptions
    ("hedphones", [{6}]),  # the spec's own example
    ("iphon", [{10}]),  # prefix, and the spec's example
    ("espresso", [{5}, {3, 20}]),
    ("wireless", [{6, 14}, {7}]),
    ("green tea", [{16}, {18}]),
    ("tea", [{16, 17, 18}]),
    ("speakr", [{8, 9}]),
    ("keybord", [{13}]),
    ("usb", [{11}, {13, 26}]),
    ("yoga", [{23}]),
    ("backpak", [{25}]),
]


async def test_quality(catalogue: Runtime) -> None:
    # One database for all twenty queries (a fresh one each would dominate the run
    # time on PostgreSQL); every miss is reported, not only the first.
    misses = []
    for query, expected in QUALITY:
        found = keys(catalogue, query, limit=10)
        start = 0
        for group in expected:
            if set(found[start : start + len(group)]) != group:
                misses.append(f"{query!r}: expected {expected}, found {found}")
                break
            start += len(group)
    assert not misses, "\n".join(misses)


async def test_a_name_match_outranks_description_matches(catalogue: Runtime) -> None:
    hits = search(catalogue, "headphones")
    assert [hit.key for hit in hits][:1] == [6]
    assert hits[0].rank > hits[1].rank
    assert not any(hit.fuzzy for hit in hits)


async def test_typo_hits_follow_word_hits_and_are_marked(catalogue: Runtime) -> None:
    hits = search(catalogue, "black coffee")
    assert hits[0].key == 3
    assert not hits[0].fuzzy
    assert hits[0].rank >= 1
    assert all(hit.fuzzy and hit.rank < 1 for hit in hits[1:])
    assert search(catalogue, "blak coffee", fuzzy=False) == []


async def test_filters(catalogue: Runtime) -> None:
    assert keys(catalogue, "coffee", filters={"category": "kitchen"}) == [20, 19]
    assert keys(catalogue, "coffee", filters={"category": "food", "in_stock": False}) == [4]
    assert keys(catalogue, "headphnes", filters={"category": "office"}) == []
    with pytest.raises(ValueError, match="no filter 'price'"):
        keys(catalogue, "coffee", filters={"price": 3})


async def test_limit_and_offset_page_through_word_and_typo_hits(catalogue: Runtime) -> None:
    everything = keys(catalogue, "dark chocolate", limit=50)
    assert len(everything) >= 4
    pages = [keys(catalogue, "dark chocolate", limit=2, offset=o) for o in range(0, 50, 2)]
    assert [key for page in pages for key in page] == everything
    assert keys(catalogue, "coffee", limit=0) == []


#: Inputs that would be FTS5 or tsquery syntax if they were not quoted.
INJECTIONS = [
    '"',
    "*",
    "AND",
    "NEAR(",
    "-",
    "'",
    'coffee"*',
    "a OR b",
    'NEAR("a" "b")',
    "o'clock",
    "\\",
    ":*",
    "!&|",
    "(",
    "col:val",
    "^x",
    "   ",
    "",
]


async def test_user_input_is_never_query_syntax(catalogue: Runtime) -> None:
    for text in INJECTIONS:
        hits = search(catalogue, text)
        assert all(isinstance(hit.key, int) for hit in hits), text


async def test_injection_characters_around_words_still_find_them(catalogue: Runtime) -> None:
    assert keys(catalogue, '"yoga*')[:1] == [23]
    assert keys(catalogue, "-yoga) NEAR(")[:1] == [23]


async def test_upsert_and_delete_keep_the_index_in_step(catalogue: Runtime) -> None:
    with catalogue.database.transaction() as session:
        session.execute(
            insert(products).values(
                id=31, name="Matcha Whisk", description="Bamboo whisk.", category="kitchen"
            )
        )
        session.execute(update(products).where(products.c.id == 23).values(name="Pilates Mat"))
        index.upsert(session, 31, 23)
    assert keys(catalogue, "matcha", fuzzy=False) == [31]
    assert keys(catalogue, "pilates", fuzzy=False) == [23]
    assert 23 not in keys(catalogue, "yoga", fuzzy=False)

    with catalogue.database.transaction() as session:
        session.execute(delete(products).where(products.c.id == 31))
        index.upsert(session, 31)  # a missing row loses its entry
        index.delete(session, 16)  # the row stays, its entry goes
    assert keys(catalogue, "matcha", fuzzy=False) == []
    assert 16 not in keys(catalogue, "green tea", fuzzy=False)


async def test_a_rolled_back_upsert_leaves_the_index_alone(catalogue: Runtime) -> None:
    def rename_then_fail() -> None:
        with catalogue.database.transaction() as session:
            session.execute(update(products).where(products.c.id == 23).values(name="Pilates Mat"))
            index.upsert(session, 23)
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        rename_then_fail()
    assert keys(catalogue, "yoga")[:1] == [23]


async def test_rebuild_reports_progress_and_restores_the_index(catalogue: Runtime) -> None:
    seen: list[tuple[int, int]] = []
    with catalogue.database.transaction() as session:
        index.delete(session, *range(1, 31))
    assert keys(catalogue, "coffee") == []
    with catalogue.database.transaction() as session:
        count = index.rebuild(
            session, batch=8, progress=lambda done, total: seen.append((done, total))
        )
    assert count == 30
    assert seen == [(0, 30), (8, 30), (16, 30), (24, 30), (30, 30)]
    assert keys(catalogue, "coffee")[:3] != []


async def test_drop_and_create_from_a_connection(catalogue: Runtime) -> None:
    with catalogue.database.write_engine.begin() as connection:
        index.drop(connection)
        index.create(connection)
    assert keys(catalogue, "coffee") == []
    with catalogue.database.transaction() as session:
        index.rebuild(session)
    assert set(keys(catalogue, "coffee")[:3]) == {3, 4, 20}


def test_declaration_is_checked() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        SearchIndex("Bad Name", products, key="id", fields={"name": "A"})
    with pytest.raises(ValueError, match="no column 'title'"):
        SearchIndex("x", products, key="id", fields={"title": "A"})
    with pytest.raises(ValueError, match="weight"):
        SearchIndex("x", products, key="id", fields={"name": "E"})  # type: ignore[dict-item]


def test_an_index_knows_its_own_tables() -> None:
    own = ["product_search_search", "product_search_fts", "product_search_tri_docsize"]
    assert all(index.owns_table(name) for name in own)
    others = ["products", "product_search", "product_search_fts_extra", "other_search_fts"]
    assert not any(index.owns_table(name) for name in others)


async def test_autogenerate_leaves_the_index_tables_alone(runtime: Runtime) -> None:
    include = runtime.migrator().config().attributes["include_object"]
    reflected = MetaData()
    assert not include(Table("product_search_fts_data", reflected), None, "table", True, None)
    assert include(Table("unrelated", reflected), None, "table", True, None)
