"""Lean HTTP clients for the benchmark (bench/streams.py, bench/waiters.py, bench/jobs.py), run as
processes of their own.

python -m bench.stream_load streams --port P --token T < job-ids
    opens one event stream per job id (raw asyncio sockets on uvloop: a few KiB and no parsing
    library per stream, so that the clients are never what is measured), prints `ready <s>`
    once every stream has its first event, then one JSON line once every stream has ended:
    per job, when (time.monotonic(), the system-wide clock) its terminal event arrived.
python -m bench.stream_load polls --port P --token T --ids FILE --wait W
    the same with one long-poll (GET /api/v1/checklists/{id}?wait=W) per job, asked again on the
    same connection until the job is final; prints `ready <s>` once every request is sent, then
    one JSON line: per job, when its final answer arrived, and how many answers it took.
python -m bench.stream_load submit --port P --token T --count N --connections C --out FILE
    submits N trips over C keep-alive connections, writes the job ids to FILE, then reads each
    job once (GET /api/v1/checklists/{id}); prints the seconds each half took as one JSON line.
python -m bench.stream_load probe --port P --token T --job ID --seconds S
    times GET /health and GET /api/v1/checklists/{ID} one after the other on one keep-alive
    connection, every 5 ms for S seconds; prints their latencies (ms) as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import uvloop

from bench.harness import TRIP, raise_nofile

_TERMINAL = (b"job.succeeded", b"job.failed", b"job.canceled")
_FINAL_STATUS = (b'"status":"succeeded"', b'"status":"failed"', b'"status":"canceled"')


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


def _request(path: str, token: str, accept: str = "application/json") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nAccept: {accept}\r\n\r\n"
    ).encode()


async def _head(reader: asyncio.StreamReader, expect: bytes = b" 200 ") -> dict[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    if expect not in status:
        raise RuntimeError(f"unexpected answer: {status!r}")
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines if line)}


async def _chunk(reader: asyncio.StreamReader) -> bytes | None:
    """One chunk of a chunked body (uvicorn sends each SSE message as one); None at the end."""
    size = int((await reader.readline()).strip(), 16)
    if size == 0:
        await reader.readline()
        return None
    return (await reader.readexactly(size + 2))[:-2]


class _Waiters:
    """One waiting client per job id. `run` prints `ready <s>` once every client is going (its
    `follow` says so with `going`), then one JSON line: per job, when its final answer arrived
    (`finished`) and how many answers or events it took (under `COUNTED`), and the CPU used."""

    COUNTED = ""

    def __init__(self, port: int, token: str, ids: list[str]) -> None:
        self.port, self.token, self.ids = port, token, ids
        self.finished: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._going = 0
        self._all_going = asyncio.Event()

    def going(self) -> None:
        self._going += 1
        if self._going == len(self.ids):
            self._all_going.set()

    async def follow(self, job_id: str, gate: asyncio.Semaphore) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        began = time.monotonic()
        gate = asyncio.Semaphore(100)
        tasks = [asyncio.create_task(self.follow(job_id, gate)) for job_id in self.ids]
        await self._all_going.wait()
        print(f"ready {time.monotonic() - began:.3f}", flush=True)
        await asyncio.gather(*tasks)
        result = {"finished": self.finished, self.COUNTED: self.counts, "cpu": time.process_time()}
        print(json.dumps(result), flush=True)


class Streams(_Waiters):
    """A client is going once its stream has sent its first event."""

    COUNTED = "events"

    async def follow(self, job_id: str, gate: asyncio.Semaphore) -> None:
        async with gate:  # connect in waves, as clients arriving over a moment would
            reader, writer = await _connect(self.port)
            writer.write(_request(f"/api/v1/checklists/{job_id}/events", self.token, "text/event-stream"))
            await _head(reader)
        first = True
        while (chunk := await _chunk(reader)) is not None:
            if chunk.startswith(b":"):
                continue  # a heartbeat
            self.counts[job_id] = self.counts.get(job_id, 0) + 1
            if first:
                first = False
                self.going()
            if any(kind in chunk for kind in _TERMINAL):
                self.finished[job_id] = time.monotonic()
        writer.close()


class Polls(_Waiters):
    """A client is going once it is connected; it asks again until the job is final."""

    COUNTED = "answers"

    def __init__(self, port: int, token: str, ids: list[str], wait: float) -> None:
        super().__init__(port, token, ids)
        self.wait = wait

    async def follow(self, job_id: str, gate: asyncio.Semaphore) -> None:
        request = _request(f"/api/v1/checklists/{job_id}?wait={self.wait:g}", self.token)
        async with gate:
            reader, writer = await _connect(self.port)
        self.going()
        while True:
            writer.write(request)
            body = await reader.readexactly(int((await _head(reader))[b"content-length"]))
            self.counts[job_id] = self.counts.get(job_id, 0) + 1
            if any(status in body for status in _FINAL_STATUS):
                self.finished[job_id] = time.monotonic()
                break
        writer.close()


async def submit(port: int, token: str, count: int, connections: int) -> list[str]:
    """Submit `count` trips, then read each job once; both over `connections` keep-alive connections."""
    ids: list[str] = []
    submission = (
        f"POST /api/v1/checklists HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(TRIP)}\r\n\r\n"
    ).encode() + TRIP
    left = count

    async def submitter() -> None:
        nonlocal left
        reader, writer = await _connect(port)
        while left > 0:
            left -= 1
            writer.write(submission)
            body = await reader.readexactly(int((await _head(reader, b" 202 "))[b"content-length"]))
            ids.append(json.loads(body)["id"])
        writer.close()

    async def poller(share: list[str]) -> None:
        reader, writer = await _connect(port)
        for job_id in share:
            writer.write(_request(f"/api/v1/checklists/{job_id}", token))
            await reader.readexactly(int((await _head(reader))[b"content-length"]))
        writer.close()

    began = time.monotonic()
    await asyncio.gather(*(submitter() for _ in range(connections)))
    submitted = time.monotonic()
    await asyncio.gather(*(poller(ids[n::connections]) for n in range(connections)))
    timings = {"submit": submitted - began, "read": time.monotonic() - submitted, "cpu": time.process_time()}
    print(json.dumps(timings), flush=True)
    return ids


async def probe(port: int, token: str, job_id: str, seconds: float) -> None:
    reader, writer = await _connect(port)
    latencies: dict[str, list[float]] = {"health": [], "poll": []}
    requests = {"health": _request("/health", token), "poll": _request(f"/api/v1/checklists/{job_id}", token)}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, request in requests.items():
            began = time.perf_counter()
            writer.write(request)
            head = await _head(reader)
            await reader.readexactly(int(head[b"content-length"]))
            latencies[name].append((time.perf_counter() - began) * 1000)
        await asyncio.sleep(0.005)
    writer.close()
    print(json.dumps(latencies), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_load", description=__doc__)
    parser.add_argument("mode", choices=["streams", "polls", "submit", "probe"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--ids", help="streams, polls: a file of job ids, one per line")
    parser.add_argument("--wait", type=float, default=30.0, help="polls: the long-poll's wait")
    parser.add_argument("--count", type=int, default=1000, help="submit: how many jobs")
    parser.add_argument("--connections", type=int, default=16, help="submit: how many connections")
    parser.add_argument("--out", help="submit: where the job ids go")
    parser.add_argument("--job", help="probe: the job to poll")
    parser.add_argument("--seconds", type=float, default=5.0, help="probe: how long")
    args = parser.parse_args()
    raise_nofile()
    if args.mode == "streams":
        ids = Path(args.ids).read_text().split()
        uvloop.run(Streams(args.port, args.token, ids).run())
    elif args.mode == "polls":
        ids = Path(args.ids).read_text().split()
        uvloop.run(Polls(args.port, args.token, ids, args.wait).run())
    elif args.mode == "submit":
        ids = uvloop.run(submit(args.port, args.token, args.count, args.connections))
        Path(args.out).write_text("\n".join(ids))
    else:
        uvloop.run(probe(args.port, args.token, args.job, args.seconds))


if __name__ == "__main__":
    main()
