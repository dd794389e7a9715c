"""``rosetta serve`` with ``server.workers`` > 1: prepare once, fork the workers, supervise them.

The parent migrates the database and reconciles the file store before any worker listens (so no
upload is in flight when orphans are removed), reserves the port, allocates the shared write
generations and the workers' inboxes, then forks. Each worker is a whole server (rosetta.app) that
binds the port with SO_REUSEPORT: the kernel spreads connections across them, and the workers even
out what it spread unevenly (``server.balance_connections``, see rosetta.balance). The parent's own
socket is bound but never listens, so it receives no connections; it keeps the port for the
server's lifetime. With one worker per core, each worker runs on a CPU of its own
(``server.pin_workers``, see rosetta.affinity).

SIGTERM or SIGINT to the parent is passed on to every worker, each of which shuts down cleanly
(sockets closed with 1001). A worker that dies on its own takes the server down with it (exit 1):
the service manager restarts the whole, which is simpler to reason about than a partial server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable

from rosetta import affinity
from rosetta.balance import Loads, handoff_for, handoff_links
from rosetta.cluster import Cluster, cluster_for, links
from rosetta.config import Config
from rosetta.store.generations import Generations

log = logging.getLogger("rosetta")
EXIT_OK, EXIT_FAILED = 0, 1


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT that never listens: it holds the port only."""
    family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    reserved = socket.socket(family, kind, proto)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reserved.bind(address)
    return reserved


def serve_workers(config: Config, prepare: Callable[[Config], Awaitable[None]],
                  serve: Callable[[Config, Cluster], Awaitable[int]]) -> int:
    """Run ``prepare`` once, then ``serve`` in ``config.server.workers`` forked processes; wait for them."""
    size = config.server.workers
    asyncio.run(prepare(config))  # its loop and threads are gone before the fork
    reserved = reserve_port(config.server.host, config.server.port)
    config = dataclasses.replace(config, server=dataclasses.replace(config.server,
                                                                    port=reserved.getsockname()[1]))
    memory = Generations.allocate(size)
    pairs = links(size)
    balancing = config.server.balance_connections
    loads, handoff_pairs = Loads(size), handoff_links(size) if balancing else {}
    children: dict[int, int] = {}
    cpus = affinity.allowed_cpus()
    for index in range(size):
        pid = os.fork()
        if pid == 0:  # the worker: it never returns into the parent's code
            code = EXIT_FAILED
            try:
                reserved.close()
                handoff = handoff_for(index, loads, handoff_pairs) if balancing else None
                cluster = cluster_for(index, size, memory, pairs, handoff)
                if config.server.pin_workers and affinity.pin_worker(index, size, cpus) is not None:
                    code = asyncio.run(spread_executor_then(cpus, serve(config, cluster)))
                else:
                    code = asyncio.run(serve(config, cluster))
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = index
    for write_end, read_end in [*pairs.values(), *handoff_pairs.values()]:
        write_end.close()
        read_end.close()
    log.info("Rosetta: %d workers on port %d (pids %s)", size, config.server.port,
             ", ".join(str(pid) for pid in children))
    return supervise(children)


async def spread_executor_then(cpus: list[int], serving: Awaitable[int]) -> int:
    """A pinned worker's loop: its executor's threads get every CPU back before it serves."""
    affinity.spread_default_executor(asyncio.get_running_loop(), cpus)
    return await serving


def supervise(children: dict[int, int]) -> int:
    """Wait for every worker; pass SIGTERM/SIGINT on; one dying on its own stops the others."""
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    code = EXIT_OK
    while children:
        pid, status = os.waitpid(-1, 0)
        index = children.pop(pid, None)
        if index is None:
            continue
        exit_code = os.waitstatus_to_exitcode(status)
        if not stopping:
            log.error("worker %d (pid %d) exited with %d: stopping the server", index, pid, exit_code)
            code = EXIT_FAILED
            stop_all()
        elif exit_code != 0:
            code = EXIT_FAILED
    return code
