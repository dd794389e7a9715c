"""Tornado's HTTPServer as Rosetta runs it: what happens to a connection between accept and its requests.

Owns three hooks on Tornado's server. It counts the open connections in the shared ``Loads`` when
connections are balanced between workers (rosetta.balance). It gives each new connection to the
fast lane first, when there is one, and serves what the lane hands over with Tornado's HTTP/1
(rosetta.fastlane). And before Tornado reads a connection's next request, it lets the lane take the
connection back (``FastLane.reclaim``).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import tornado.http1connection
import tornado.httpserver
import tornado.httputil
import tornado.iostream

if TYPE_CHECKING:
    from rosetta.balance import Loads
    from rosetta.fastlane import FastLane


class HTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTPServer, counting its open connections in ``loads`` when there is one, and giving
    new connections to the fast lane first when there is one (it hands them back via ``serve_http``)."""

    loads: Loads | None = None
    fast_lane: FastLane | None = None

    def handle_stream(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        if self.loads is not None:
            self.loads.opened()
        if self.fast_lane is not None:
            self.fast_lane.take(stream, address)
        else:
            super().handle_stream(stream, address)

    def serve_http(self, stream: tornado.iostream.IOStream, address: Any) -> None:
        """Tornado's HTTP/1 from here on: for a connection the fast lane hands over (already counted)."""
        super().handle_stream(stream, address)

    def serve_socket(self, connection: socket.socket, address: Any) -> None:
        """What TCPServer does with an accepted socket (no TLS here: a proxy in front terminates it)."""
        stream = tornado.iostream.IOStream(connection, max_buffer_size=self.max_buffer_size,
                                           read_chunk_size=self.read_chunk_size)
        self.handle_stream(stream, address)

    def start_request(self, server_conn: object, request_conn: tornado.httputil.HTTPConnection,
                      ) -> tornado.httputil.HTTPMessageDelegate:
        lane = self.fast_lane
        if lane is not None and isinstance(server_conn, tornado.http1connection.HTTP1ServerConnection):
            if lane.reclaim(server_conn.stream, getattr(server_conn.context, "address", None)):
                # The lane has the connection now and Tornado's stream is closed: its request loop ends
                # on the next read, before this delegate hears anything.
                return tornado.httputil.HTTPMessageDelegate()
        return super().start_request(server_conn, request_conn)

    def lane_closed(self) -> None:
        """A connection the fast lane held, never handed over, has ended."""
        if self.loads is not None:
            self.loads.closed()

    def on_close(self, server_conn: object) -> None:
        if self.loads is not None:
            self.loads.closed()
        super().on_close(server_conn)
