"""Alembic migrations: each one upgrades a database holding data, on SQLite and
PostgreSQL, and the models match what the migrations build."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, text

from bot.store import db, replays

HEAD = "0006"


async def test_0002_adds_claims_and_runs_to_a_database_with_cases(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        await db.upgrade(engine, "0001")
        now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC).replace(tzinfo=None)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO cases (id, source, kind, title, status, lane, rule,"
                    " policy_version, recommended_action, confidence, audit_sampled,"
                    " blind_review, created_at, updated_at, version, request_hash,"
                    " submit_response, body) VALUES ('c1', 'default', 'k', 't', 'pending',"
                    " 'review', 'rule 1', 'v', 'approve', 0.8, false, false, :now, :now, 1,"
                    " 'h', '{}', '{}')"
                ),
                {"now": now},
            )
        assert await db.revision_state(engine) == ("0001", HEAD)
        await db.upgrade(engine, "0002")
        assert await db.revision_state(engine) == ("0002", HEAD)
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT id, claimed_by, claimed_at FROM cases"))).one()
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert tuple(row) == ("c1", None, None)
        assert "runs" in tables
    finally:
        await engine.dispose()


async def test_0003_copies_each_cases_dimensions_onto_its_decisions(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        await db.upgrade(engine, "0002")
        made = datetime(2026, 11, 30, 9, 0, tzinfo=UTC).replace(tzinfo=None)
        due = datetime(2026, 11, 30, 13, 0, tzinfo=UTC).replace(tzinfo=None)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO cases (id, source, kind, title, status, lane, rule,"
                    " policy_version, recommended_action, confidence, audit_sampled,"
                    " blind_review, due_at, created_at, updated_at, version, request_hash,"
                    " submit_response, body) VALUES ('c1', 'default', 'refund', 't',"
                    " 'approved', 'review', 'rule 1', 'v', 'approve', 0.82, false, true,"
                    " :due, :made, :made, 1, 'h', '{}', '{}')"
                ),
                {"made": made, "due": due},
            )
            await conn.execute(
                text(
                    "INSERT INTO decisions (case_id, action, reviewer, decided_by, final,"
                    " overrode_ai, policy_version, at) VALUES ('c1', 'approve', 'slack:U1',"
                    " 'human', true, false, 'v', :made)"
                ),
                {"made": made},
            )
        await db.upgrade(engine, "0003")
        assert await db.revision_state(engine) == ("0003", HEAD)
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT kind, lane, confidence, blind_review, case_created_at, due_at"
                        " FROM decisions"
                    )
                )
            ).one()
        assert tuple(row)[:4] == ("refund", "review", 0.82, True)
        assert str(row[4]).startswith("2026-11-30 09:00:00")
        assert str(row[5]).startswith("2026-11-30 13:00:00")
    finally:
        await engine.dispose()


async def test_0004_adds_the_replay_cache_to_a_database_with_cases(database_url: str) -> None:
    engine = db.create_engine(database_url)
    store = db.Store(engine)
    try:
        await db.upgrade(engine, "0003")
        made = datetime(2026, 12, 4, 9, 0, tzinfo=UTC).replace(tzinfo=None)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO cases (id, source, kind, title, status, lane, rule,"
                    " policy_version, recommended_action, confidence, audit_sampled,"
                    " blind_review, created_at, updated_at, version, request_hash,"
                    " submit_response, body) VALUES ('c1', 'default', 'k', 't', 'pending',"
                    " 'review', 'rule 1', 'v', 'approve', 0.8, false, false, :made, :made, 1,"
                    " 'h', '{}', '{}')"
                ),
                {"made": made},
            )
        await db.upgrade(engine)
        assert await db.revision_state(engine) == (HEAD, HEAD)
        expires = datetime(2026, 12, 4, 9, 5, tzinfo=UTC)
        key = (expires, "d" * 64)
        assert await store.run_write(lambda c: replays.claim(c, key, "default"))
        assert not await store.run_write(lambda c: replays.claim(c, key, "default"))
        answer = replays.Answer(200, b'{"id": "c1"}')
        await store.run_write(lambda c: replays.record(c, key, answer))
        found = await store.run_read(lambda c: replays.known(c, [key, (expires, "e" * 64)]))
        assert found == {"d" * 64: answer}
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM cases"))).scalar_one() == 1
    finally:
        await store.close()


async def test_0005_adds_the_web_inbox_to_a_database_with_cases(database_url: str) -> None:
    from adapters.web.sessions import Sessions

    engine = db.create_engine(database_url)
    store = db.Store(engine)
    try:
        await db.upgrade(engine, "0004")
        made = datetime(2026, 12, 4, 9, 0, tzinfo=UTC).replace(tzinfo=None)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO cases (id, source, kind, title, status, lane, rule,"
                    " policy_version, recommended_action, confidence, audit_sampled,"
                    " blind_review, created_at, updated_at, version, request_hash,"
                    " submit_response, body, due_at) VALUES ('c1', 'default', 'k', 't',"
                    " 'pending', 'review', 'rule 1', 'v', 'approve', 0.8, false, false, :made,"
                    " :made, 1, 'h', '{}', '{}', :made)"
                ),
                {"made": made},
            )
        await db.upgrade(engine)
        assert await db.revision_state(engine) == (HEAD, HEAD)
        async with engine.connect() as conn:
            indexes = await conn.run_sync(lambda sync: inspect(sync).get_indexes("cases"))
            assert {"name": "ix_cases_status_due_at", "columns": ["status", "due_at"]} in [
                {"name": i["name"], "columns": i["column_names"]} for i in indexes
            ]
            assert (await conn.execute(text("SELECT count(*) FROM cases"))).scalar_one() == 1
        sessions = Sessions(store, 12)
        now = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
        token = await sessions.new_link("carol@example.com", now)
        signed = await sessions.use_link(token, now)
        assert signed is not None
        assert signed[1] == "carol@example.com"
        assert await sessions.use_link(token, now) is None
        found = await sessions.get(signed[0], now)
        assert found is not None
        assert found.email == "carol@example.com"
    finally:
        await store.close()


async def test_the_models_match_what_the_migrations_build(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bot.store.tables import Base

    engine = db.create_engine(database_url)
    try:
        await db.upgrade(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []
