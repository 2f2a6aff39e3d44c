from __future__ import annotations

from tests.conftest import Api, case


async def test_submit_and_read(api: Api) -> None:
    created = await api.submit(case())
    assert created["lane"] == "review"
    got = await api.get(f"/v1/escalations/{created['id']}")
    assert got.status_code == 200, got.text
    assert got.json()["status"] == "pending"
