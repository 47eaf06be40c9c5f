"""Everything kept in Redis: IdP sessions, pending requests, replay cache, throttles."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

PREFIX = "idp:"
PENDING_TTL_S = 900
REFRESH_AFTER_S = 60  # an unchanged session's sliding expiry is rewritten at most this often
SOCKET_TIMEOUT_S = 0.5
LIVE_SESSIONS = PREFIX + "sessions"  # sorted set: session key -> expiry, for the gauge
VERSION = PREFIX + "version"  # bumped by every configuration change
EVENTS = PREFIX + "events"  # audit events on their way to the database
# Decrement a throttle count only while its window lasts: a plain DECR after the window ended
# would create a count without expiry, which would never reset.
GIVE_BACK = "if redis.call('exists', KEYS[1]) == 1 then redis.call('decr', KEYS[1]) end"


def connect(url: str) -> redis.Redis:
    """A client that fails fast (no retries, short timeouts) so outages answer 503 at once."""
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
    )


def new_token() -> str:
    """A random, URL-safe identifier with 256 bits of entropy."""
    return secrets.token_urlsafe(32)


@dataclass
class SpLogin:
    """What an SP was told about the user, kept for Single Logout."""

    entity_id: str
    name_id: str
    name_id_format: str
    session_index: str


@dataclass
class IdpSession:
    """One browser's sign-in at the IdP."""

    sid: str
    user_id: str
    authn_instant: float
    expires_at: float
    sps: dict[str, SpLogin] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialize for Redis (the sid is the key, not part of the value)."""
        data = {
            "user_id": self.user_id,
            "authn_instant": self.authn_instant,
            "expires_at": self.expires_at,
            "sps": {key: vars(login) for key, login in self.sps.items()},
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, sid: str, raw: bytes | str) -> IdpSession:
        """Deserialize a value written by to_json."""
        data = json.loads(raw)
        sps = {k: SpLogin(**v) for k, v in data.pop("sps").items()}
        return cls(sid=sid, sps=sps, **data)


class Store:
    """The Redis-backed state of the IdP, shared by every worker and host."""

    def __init__(self, client: redis.Redis, session_ttl: int) -> None:
        self.redis = client
        self.session_ttl = session_ttl

    # -- sessions ---------------------------------------------------------------

    def create_session(self, user_id: str) -> IdpSession:
        """Start a fresh session under a new random id (no fixation)."""
        now = time.time()
        session = IdpSession(new_token(), user_id, now, now + self.session_ttl)
        self.save_session(session)
        return session

    def load_session(self, sid: str | None) -> IdpSession | None:
        """The live session for a cookie value, or None."""
        if not _plausible(sid):
            return None
        raw = self.redis.get(_session_key(sid))
        return IdpSession.from_json(sid, raw) if raw else None

    def sso_state(self, sid: str | None, replay_key: str | None, replay_ttl: int) -> SsoState:
        """In one round trip: the session, the change counter, and the replay check.

        ``replay_key`` is marked as seen; ``first_use`` is False when it was seen before.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(VERSION)
        if _plausible(sid):
            pipe.get(_session_key(sid))
        if replay_key is not None:
            pipe.set(_seen_key(replay_key), 1, nx=True, ex=replay_ttl)
        results = iter(pipe.execute())
        raw_version = next(results)
        raw_session = next(results) if _plausible(sid) else None
        first_use = bool(next(results)) if replay_key is not None else True
        session = IdpSession.from_json(sid, raw_session) if raw_session and sid else None
        return SsoState(session, int(raw_version or 0), first_use)

    def save_session(
        self, session: IdpSession, event: dict[str, Any] | None = None, changed: bool = True
    ) -> int:
        """Store the session, slide its expiry to a full TTL, and queue an event with it.

        An unchanged session slid less than REFRESH_AFTER_S ago is not written again (only
        the event is), which keeps repeated SSO cheap. Returns how many events wait in the
        queue (0 when no event was given).
        """
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        if changed or session.expires_at - now < self.session_ttl - REFRESH_AFTER_S:
            session.expires_at = now + self.session_ttl
            key = _session_key(session.sid)
            pipe.set(key, session.to_json(), ex=self.session_ttl)
            pipe.zadd(LIVE_SESSIONS, {key: session.expires_at})
            for sp in session.sps.values():
                pipe.set(_index_key(sp.session_index), session.sid, ex=self.session_ttl)
        if event is not None:
            pipe.rpush(EVENTS, json.dumps(event, separators=(",", ":")))
        results = pipe.execute()
        return int(results[-1]) if event is not None else 0

    def session_for_index(self, session_index: str) -> IdpSession | None:
        """Find a session by a SessionIndex it issued (SLO without the cookie)."""
        sid = self.redis.get(_index_key(session_index))
        return self.load_session(sid.decode() if isinstance(sid, bytes) else sid) if sid else None

    def end_session(self, session: IdpSession) -> None:
        """Forget the session and its SessionIndex entries."""
        key = _session_key(session.sid)
        keys = [key] + [_index_key(sp.session_index) for sp in session.sps.values()]
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(*keys)
        pipe.zrem(LIVE_SESSIONS, key)
        pipe.execute()

    def active_sessions(self) -> int:
        """How many sessions are live now (expired ones are pruned first)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zremrangebyscore(LIVE_SESSIONS, "-inf", time.time())
        pipe.zcard(LIVE_SESSIONS)
        return int(pipe.execute()[1])

    # -- pending requests -------------------------------------------------------

    def put_pending(self, data: dict[str, Any]) -> str:
        """Keep an SSO request while the user logs in; returns its token."""
        token = new_token()
        self.redis.set(PREFIX + "pending:" + token, json.dumps(data), ex=PENDING_TTL_S)
        return token

    def peek_pending(self, token: str | None) -> dict[str, Any] | None:
        """Read a pending request without consuming it."""
        if not token or len(token) > 128:
            return None
        raw = self.redis.get(PREFIX + "pending:" + token)
        return json.loads(raw) if raw else None

    def take_pending(self, token: str | None) -> dict[str, Any] | None:
        """Read and delete a pending request, so it is served once."""
        if not token or len(token) > 128:
            return None
        raw = self.redis.getdel(PREFIX + "pending:" + token)
        return json.loads(raw) if raw else None

    # -- replay cache -----------------------------------------------------------

    def first_use(self, message_key: str, ttl: int) -> bool:
        """True the first time a message key (scope and ID) is seen, False on replay."""
        return bool(self.redis.set(_seen_key(message_key), 1, nx=True, ex=ttl))

    # -- queued audit events ----------------------------------------------------

    def queue_event(self, event: dict[str, Any]) -> int:
        """Queue an audit event for the database; returns the queue length."""
        return int(self.redis.rpush(EVENTS, json.dumps(event, separators=(",", ":"))))

    def queued_events(self, limit: int) -> list[dict[str, Any]]:
        """The oldest queued events, still queued."""
        return [json.loads(raw) for raw in self.redis.lrange(EVENTS, 0, limit - 1)]

    def drop_queued_events(self, count: int) -> None:
        """Remove the oldest ``count`` events (after they were written)."""
        self.redis.ltrim(EVENTS, count, -1)

    def event_flush_lock(self) -> Any:
        """A lock so one worker at a time moves queued events to the database."""
        return self.redis.lock(PREFIX + "events:lock", timeout=30, blocking=False)

    # -- login throttling -------------------------------------------------------

    def take_attempt(self, subjects: dict[str, int], window: int) -> int:
        """Count one login attempt against each subject (key -> limit).

        Returns 0 when every subject is within its limit, else the seconds until
        the tightest one frees up. The count is taken before the password is
        checked, so concurrent attempts can never pass more than the limit.
        """
        pipe = self.redis.pipeline(transaction=True)
        for subject in subjects:
            key = _throttle_key(subject)
            pipe.set(key, 0, ex=window, nx=True)  # starts the window on the first attempt
            pipe.incr(key)
            pipe.ttl(key)
        results = pipe.execute()
        retry = 0
        for i, limit in enumerate(subjects.values()):
            count, ttl = results[3 * i + 1], results[3 * i + 2]
            if count > limit:
                retry = max(retry, ttl if ttl > 0 else window)
        return retry

    def login_succeeded(self, cleared: str, released: str) -> None:
        """After a good login: reset one subject's count and give one attempt back to another.

        The email's failures are forgiven; the client address only gets back the attempt it
        just used, so many people behind one address are not locked out by each other.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(_throttle_key(cleared))
        pipe.eval(GIVE_BACK, 1, _throttle_key(released))
        pipe.execute()

    # -- change counter ---------------------------------------------------------

    def version(self) -> int:
        """The change counter (0 before the first change)."""
        return int(self.redis.get(VERSION) or 0)

    def announce_change(self, what: str) -> None:
        """Tell every worker that stored configuration changed, so their caches reload.

        Best effort: the change is already committed, so a Redis outage must not turn it
        into an error; workers also reload cached entries after a short max age.
        """
        try:
            self.redis.incr(VERSION)
        except redis.RedisError as exc:
            log.warning("could not announce a change of %s: %s", what, exc.__class__.__name__)


def announce_once(url: str | None, what: str) -> None:
    """From a one-off process (the CLI): tell running workers that stored data changed.

    Without a configured Redis (the embedded one belongs to ``idp serve``) workers pick the
    change up within their cache's maximum age.
    """
    if url is None:
        return
    client = connect(url)
    try:
        Store(client, 0).announce_change(what)
    finally:
        client.close()


@dataclass(frozen=True)
class SsoState:
    """What an SSO request reads from Redis at once."""

    session: IdpSession | None
    version: int
    first_use: bool


def _plausible(sid: str | None) -> TypeGuard[str]:
    return bool(sid) and len(sid or "") <= 128


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _session_key(sid: str) -> str:
    return PREFIX + "session:" + _digest(sid)


def _index_key(session_index: str) -> str:
    return PREFIX + "sidx:" + _digest(session_index)


def _seen_key(message_key: str) -> str:
    return PREFIX + "seen:" + _digest(message_key)


def _throttle_key(subject: str) -> str:
    return PREFIX + "throttle:" + _digest(subject)
