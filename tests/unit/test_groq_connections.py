"""The Groq provider's connections: one per worker slot, kept alive between calls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from shared.schemas import TripRequest
from shared.settings import GroqSettings
from tests.fakes.groq_server import FakeGroq, Reply
from worker.providers.groq import GroqProvider

TRIP = TripRequest(location="Lisbon, Portugal", days=3, transport="plane", occasion="city break")


def test_a_worker_with_more_slots_than_the_sdk_keeps_reuses_one_connection_per_slot(groq: FakeGroq) -> None:
    """The SDK's pool keeps 20 connections alive; 30 slots calling at once, twice, must not open
    connections beyond their 30 (each one a TLS handshake with the real Groq)."""
    groq.default = Reply.ok(delay=0.2)
    slots = 30
    provider = GroqProvider(GroqSettings(api_key="test-key", base_url=groq.base_url))
    try:
        with ThreadPoolExecutor(slots) as pool:
            for _ in range(2):
                generated = list(pool.map(lambda _: provider.generate(TRIP), range(slots)))
                assert all(generation.checklist.items for generation in generated)
    finally:
        provider.close()
    assert len(groq.received) == 2 * slots
    assert len({received.peer for received in groq.received}) <= slots
