#!/usr/bin/env python3
"""Opens COUNT keep-alive connections to 127.0.0.1:PORT, sends one GET of PATH on each, reads its
whole response, and keeps every connection open. Prints progress lines, then "ready N" once N
connections stand (each answered and not closed by the server), then waits: a line on stdin (or
its end) makes it check that every connection is still open, print "still-open N", and close them.

Usage: idle_client.py PORT COUNT [PATH]. Needs an open-file limit above COUNT (the script raises
its soft limit to the hard one; bench/idle-connections.sh raises the hard one with ulimit -n).
"""
import asyncio
import resource
import sys


async def open_one(port, path, sem):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: idle-client\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if headers.get("connection", "").lower() == "close":
            raise RuntimeError(f"the server closes the connection after {status}")
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        return status, reader, writer


async def main():
    port, count = int(sys.argv[1]), int(sys.argv[2])
    path = sys.argv[3] if len(sys.argv) > 3 else "/"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < count + 64:
        sys.exit(f"open-file limit {hard} is too low for {count} connections (ulimit -n)")
    # At most 200 connects in flight: the listener's backlog (511) is never the limit measured.
    sem = asyncio.Semaphore(200)
    tasks = [asyncio.create_task(open_one(port, path, sem)) for _ in range(count)]
    connections, statuses, failures = [], {}, []
    for done, task in enumerate(asyncio.as_completed(tasks), 1):
        try:
            status, reader, writer = await task
            connections.append((reader, writer))
            statuses[status] = statuses.get(status, 0) + 1
        except Exception as error:  # counted and shown: a refused or closed connection is a result
            failures.append(repr(error))
        if done % 2000 == 0:
            print(f"opened {done}", flush=True)
    print(f"statuses {statuses}; failures {len(failures)}" + (f" (first: {failures[0]})" if failures else ""), flush=True)
    print(f"ready {len(connections)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    # The loop kept running while it waited: a connection the server closed has seen its EOF.
    still_open = sum(1 for reader, _ in connections if not reader.at_eof())
    print(f"still-open {still_open}", flush=True)
    for _, writer in connections:
        writer.close()


asyncio.run(main())
