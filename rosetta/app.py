"""The application object: builds the store, hub, services, jobs and the Tornado app; start()/stop().

There is no module-level state: everything hangs off ``RosettaApp`` and reaches handlers through
``initialize()``, so a test builds a fresh one per server.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import pkgutil
import socket
from collections.abc import Callable
from typing import Any

import tornado.netutil
import tornado.routing
import tornado.web

import rosetta.handlers
from rosetta import balance
from rosetta.clock import Clock
from rosetta.cluster import Cluster
from rosetta.config import Config
from rosetta.fastlane import FastLane
from rosetta.handlers import lean
from rosetta.handlers.auth_web import session_resolver
from rosetta.handlers.base import NotFoundHandler
from rosetta.handlers.rooms import guest_resolver
from rosetta.httpserver import HTTPServer
from rosetta.jobs import JobRunner
from rosetta.ratelimit import RateLimiter
from rosetta.realtime.hub import Hub
from rosetta.routing import SegmentRouter
from rosetta.services.accounts import AccountService
from rosetta.services.attachments import FileAttachments
from rosetta.services.auth import TokenService
from rosetta.services.cleanup import CLEANUP_EVERY_S, CredentialCleanup
from rosetta.services.context import Context
from rosetta.services.devices import DeviceService
from rosetta.services.direct import DirectService
from rosetta.services.files import FileService
from rosetta.services.glossary import GlossaryService
from rosetta.services.guests import GuestService
from rosetta.services.invites import InviteService
from rosetta.services.keys import AppKey
from rosetta.services.mailer import Mailer
from rosetta.services.members import MemberService
from rosetta.services.messages import MessageService
from rosetta.services.oauth import OAuthService
from rosetta.services.otp import OtpService
from rosetta.services.outgoing import OutgoingService
from rosetta.services.password_reset import PasswordResetService
from rosetta.services.push import PushService
from rosetta.services.rooms import RoomService
from rosetta.services.sessions import SessionService
from rosetta.services.translation import TranslationService
from rosetta.services.trimming import TRIM_EVERY_S
from rosetta.services.verification import VerificationService
from rosetta.services.webhooks import WebhookService
from rosetta.services.workspaces import WorkspaceService
from rosetta.store.db import Database
from rosetta.translation.base import build_provider

log = logging.getLogger("rosetta")
access_log = logging.getLogger("tornado.access")
SLOW_REQUEST_MS = 1000.0  # logged even when server.access_log = "errors"
API_PREFIX = "/api/v1"
IDLE_TIMEOUT_S = 120.0  # a keep-alive connection waiting this long for its next request is closed
# A request body must arrive within BODY_TIMEOUT_S plus its length at MIN_BODY_RATE (a slow mobile uplink,
# ~256 kbit/s): 30 s for a small JSON body, ~14 min for a 25 MB upload. Without a bound, a body sent a
# byte a minute held its connection (and an upload's temporary file) forever, also on public routes.
BODY_TIMEOUT_S = 30.0
MIN_BODY_RATE = 32 * 1024  # bytes per second
CHECKPOINT_EVERY_S = 1.0  # the WAL stays at about a second of writes (the core bench: ~1,000 sends)
MAIL_POLL_S = 5.0  # outbox poll: a code or link reaches the relay within ~5 s of the request
WEBHOOK_POLL_S = 2.0  # outgoing webhook outbox poll: receivers hear of an event within ~2 s
PUSH_POLL_S = 1.0  # push outbox poll: also the granularity of the translation wait


def collect_routes() -> list[tuple[str, type]]:
    """Every handlers module's ``ROUTES``, prefixed with /api/v1."""
    routes: list[tuple[str, type]] = []
    for info in sorted(pkgutil.iter_modules(rosetta.handlers.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"rosetta.handlers.{info.name}")
        for path, handler in getattr(module, "ROUTES", []):
            routes.append((API_PREFIX + path, handler))
    return routes


class RosettaApp:
    def __init__(self, config: Config, clock: Clock | None = None, run_jobs: bool = True,
                 cluster: Cluster | None = None) -> None:
        self.config = config
        self.run_jobs = run_jobs  # tests turn timers off and call jobs.run_once() instead
        self.body_timeout_s = BODY_TIMEOUT_S  # the fixed part of each body's deadline (tests shorten it)
        self.clock = clock or Clock()
        # One of server.workers processes (rosetta.workers), or the only one.
        self.cluster = cluster or Cluster()
        self.db = Database(config.data_dir / "rosetta.sqlite3", synchronous=config.storage.synchronous,
                           readers=config.storage.readers, group_commit_max=config.storage.group_commit_max,
                           generations=self.cluster.generations, shared_writer=self.cluster.size > 1)
        self.hub = Hub()
        if self.cluster.size > 1:
            self.hub.connection_prefix = f"w{self.cluster.index}c"  # connection ids unique across workers
        self.ctx = Context(config=config, clock=self.clock, db=self.db, hub=self.hub, peers=self.cluster.peers)
        self.limiter = RateLimiter(self.clock, self.cluster.peers)
        self.jobs = JobRunner()
        self.jobs.add("db.checkpoint", CHECKPOINT_EVERY_S, self.db.checkpoint)  # see store/db.py: off the COMMIT
        # Extra credential resolvers (web sessions, guest tokens) register here: (handler) -> Principal.
        self.resolvers: list[Callable[[Any], Any]] = []
        self.tokens = TokenService(self.ctx)
        self.accounts = AccountService(self.ctx, self.tokens)
        self.workspaces = WorkspaceService(self.ctx)
        self.messages = MessageService(self.ctx)
        # Realtime gateway (issue 3): the hub renders message events with the app's MessageService.
        self.hub.attach(self.ctx, self.messages, self.jobs)
        # Members, invites and direct chat (issue 2 core REST).
        self.members = MemberService(self.ctx, self.workspaces)
        self.invites = InviteService(self.ctx, self.workspaces)
        self.direct = DirectService(self.ctx, self.messages)
        # Temporary rooms (issue 8): guest tokens resolve through app.resolvers; the sweep expires rooms.
        self.rooms = RoomService(self.ctx)
        self.guests = GuestService(self.ctx, self.rooms)
        self.resolvers.append(guest_resolver(self.guests))
        self.jobs.add("rooms.expire", config.temporary_rooms.sweep_interval_s, self.rooms.sweep)
        self.hub.audiences["room"] = self.rooms.readers  # room.expired / room.extended reach members and guests
        # Sign-in beyond passwords (issue 6): mail outbox, one-time codes, resets, verification, web sessions.
        self.app_key = AppKey(config)
        self.mailer = Mailer(self.ctx)
        self.sessions = SessionService(self.ctx, self.app_key)
        self.otp = OtpService(self.ctx, self.app_key, self.mailer)
        self.password_resets = PasswordResetService(self.ctx, self.mailer, self.base_url)
        self.verification = VerificationService(self.ctx, self.app_key, self.mailer, self.base_url)
        self.accounts.registration_hooks.append(self.verification.enqueue)
        self.resolvers.append(session_resolver)
        self.jobs.add("mail.send", MAIL_POLL_S, self.mailer.send_due)
        self.jobs.add("mail.trim", TRIM_EVERY_S, self.mailer.trim)
        self.cleanup = CredentialCleanup(self.ctx)
        self.jobs.add("credentials.cleanup", CLEANUP_EVERY_S, self.cleanup.run)
        # Social sign-in: [oauth.NAME] tables are validated here, so a bad one stops start-up naming the key.
        self.oauth = OAuthService(self.ctx, self.base_url)
        # Per-reader translation (issue 4): the port of MessageService, its queue worker, glossaries.
        self.translation = TranslationService(self.ctx, build_provider(config.translation), self.messages,
                                              autorun=run_jobs)
        if self.translation.enabled:  # with "none" nothing is queued: readers of other languages see skipped
            self.messages.translations = self.translation
        peers = self.cluster.peers
        if peers is not None and self.cluster.runs_jobs:
            peers.on("translation.wake", lambda _: self.translation.queue.wake())
        elif peers is not None:
            self.translation.queue.wake_elsewhere = lambda: peers.send("translation.wake")
        self.glossary = GlossaryService(self.ctx, self.workspaces)
        self.jobs.add("translation.work", config.translation.poll_interval_s, self.translation.queue.work)
        self.jobs.add("translation.memory_trim", TRIM_EVERY_S, self.translation.trim_memory)
        # Integrations (issue 7): incoming/Slack webhooks, outgoing webhooks and push (both queue their
        # outbox rows through "event.emitted" hooks inside the emitting transaction), devices.
        self.webhooks = WebhookService(self.ctx, self.workspaces, self.messages)
        self.outgoing = OutgoingService(self.ctx, self.workspaces)
        self.devices = DeviceService(self.ctx)
        self.push = PushService(self.ctx, self.messages)
        self.jobs.add("webhooks.deliver", WEBHOOK_POLL_S, self.outgoing.deliver_due)
        self.jobs.add("push.deliver", PUSH_POLL_S, self.push.deliver_due)
        # Their records are trimmed by the hour, whether or not anything is being delivered.
        self.jobs.add("webhooks.trim", TRIM_EVERY_S, self.outgoing.trim)
        self.jobs.add("push.trim", TRIM_EVERY_S, self.push.trim)
        # Files and attachments (issue 5): the AttachmentPort of MessageService, the staged-file sweep.
        self.files = FileService(self.ctx)
        self.attachments = FileAttachments(self.ctx, self.workspaces, self.base_url)
        self.messages.attachments = self.attachments
        self.jobs.add("files.sweep", config.files.sweep_interval_s, self.files.sweep)
        # A purged temporary room's files: rows soft-deleted in the purge, bytes removed after (issue 8).
        self.rooms.remove_bytes = lambda names: self.ctx.off_loop(self.files.blobs.remove, names)
        self.server: HTTPServer | None = None
        self.balancer: balance.Balancer | None = None
        self.fast_lane: FastLane | None = None
        self.http: lean.Application | None = None  # the Tornado application, made when the server starts
        self.port: int | None = None

    def base_url(self) -> str:
        """Where people reach us, for links in mail: ``server.public_url``, else the address we listen on."""
        server = self.config.server
        if server.public_url or self.port is None:
            return server.base_url()
        return dataclasses.replace(server, port=self.port).base_url()

    def make_tornado_app(self) -> lean.Application:
        handlers = [(path, handler, {"app": self}) for path, handler in collect_routes()]
        application = lean.Application(
            self,
            [],
            default_handler_class=NotFoundHandler,
            default_handler_args={"app": self},
            compress_response=False,
            xheaders=False,
            log_function=self.log_request,
        )
        # One dict lookup on the first path segment instead of trying every route's regex in turn.
        application.segments = SegmentRouter(application, API_PREFIX, handlers)
        application.wildcard_router.add_rules([(tornado.routing.AnyMatches(), application.segments)])
        return application

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        # _request_summary: handlers redact what a URL may carry as a credential (/hooks/{secret}, ?access_token=).
        self.log_access(handler.get_status(), handler._request_summary, 1000.0 * handler.request.request_time())

    def log_access(self, status: int, summary: Callable[[], str], elapsed_ms: float) -> None:
        """The access log, as ``server.access_log`` asks: every request, only failures and slow ones, or none.

        ``summary`` (``METHOD uri (ip)``, credentials redacted) is made only for a line that is logged:
        with the default mode most requests log nothing, and the redaction parses the query.
        """
        mode = self.config.server.access_log
        if mode == "off" or (mode == "errors" and status < 400 and elapsed_ms < SLOW_REQUEST_MS):
            return
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        access_log.log(level, "%d %s %.2fms", status, summary(), elapsed_ms)

    def body_deadline_s(self, length: int) -> float:
        """How long a request body of ``length`` bytes may take to arrive before its connection is closed."""
        return self.body_timeout_s + length / MIN_BODY_RATE

    async def start(self) -> None:
        """Open the database (migrating it), start the jobs, listen. ``server.port = 0`` picks a free port."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await self.db.open()
        if self.cluster.size == 1:  # with several workers the parent did it before forking them
            await self.prepare()
        await self.translation.start()  # loads the language-detection model off the loop
        server_cfg = self.config.server
        # The largest body any route accepts; JSON routes enforce their own smaller bound in prepare().
        max_body = int(max(server_cfg.max_body_mb, self.config.files.max_upload_mb) * 1024 * 1024) + 64 * 1024
        self.http = self.make_tornado_app()
        # Each handler narrows the body's deadline to its own request in prepare(); this bounds the rest.
        self.server = HTTPServer(self.http, max_body_size=max_body, idle_connection_timeout=IDLE_TIMEOUT_S,
                                 body_timeout=self.body_deadline_s(max_body))
        if server_cfg.fast_lane:
            self.fast_lane = FastLane(self.http, self.server, IDLE_TIMEOUT_S)
            self.server.fast_lane = self.fast_lane
        sockets = tornado.netutil.bind_sockets(server_cfg.port, server_cfg.host, family=socket.AF_INET
                                               if ":" not in server_cfg.host else socket.AF_UNSPEC,
                                               reuse_port=self.cluster.size > 1)
        self.port = sockets[0].getsockname()[1]
        if self.cluster.handoff is not None:  # several workers evening out their connections
            self.balancer = balance.Balancer(self.server, self.cluster.handoff)
            self.balancer.listen(sockets)
        else:
            self.server.add_sockets(sockets)
        if self.cluster.peers is not None:
            self.cluster.peers.start()
        self.jobs.start(self.run_jobs, shared=self.cluster.runs_jobs)
        log.info("Rosetta %slistening on http://%s:%s (data in %s)",
                 f"worker {self.cluster.index} " if self.cluster.size > 1 else "", server_cfg.host, self.port,
                 self.config.data_dir.resolve())
        if self.config.translation.provider == "none" and self.cluster.runs_jobs:
            log.info("Translation is off (translation.provider = none): messages are shown in the original.")

    async def prepare(self) -> None:
        """Start-up work done once per server, before anything listens (the database is open)."""
        await self.files.reconcile()  # no upload is in flight, so orphans are real
        self.app_key.get()  # made now when missing: every worker then reads the same key
        await self.translation.move_old_memory()  # from the database into its own file (once)

    async def stop(self) -> None:
        if self.cluster.peers is not None:
            self.cluster.peers.stop()
        await self.jobs.stop()
        await self.translation.stop()  # before the database closes: the worker may be mid-round
        await self.hub.close_all()  # WebSockets get 1001 and SSE streams end before the server closes
        if self.balancer is not None:
            self.balancer.stop()
            self.balancer = None
        if self.server is not None:
            self.server.stop()
            if self.fast_lane is not None:
                await self.fast_lane.close_all()
                self.fast_lane = None
            await self.server.close_all_connections()
            self.server = None
        await self.db.close()
