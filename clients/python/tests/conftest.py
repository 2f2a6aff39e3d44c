from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from serverkit import SECRET, Reviewer, Server, serving

from signoff_client import AsyncSignoff, Signoff


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("serve")) as running:
        yield running


@pytest.fixture(scope="session")
def reviewer(server: Server) -> Iterator[Reviewer]:
    person = Reviewer(server)
    yield person
    person.close()


@pytest.fixture
def signoff(server: Server) -> Iterator[Signoff]:
    with Signoff(server.url, secret=SECRET) as client:
        yield client


@pytest.fixture
async def asignoff(server: Server) -> AsyncIterator[AsyncSignoff]:
    async with AsyncSignoff(server.url, secret=SECRET) as client:
        yield client
