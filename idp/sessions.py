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
# Count one request against its address's minute (when a limit is given); over the limit,
# answer the seconds to wait and store nothing; else SET NX the replay key (when given) and
# answer whether it was new.
REMEMBER = """
local limit = tonumber(ARGV[1])
if limit >= 0 then
  local count = redis.call('incr', KEYS[1])
  if count == 1 then redis.call('expire', KEYS[1], 60) end
  if count > limit then
    local ttl = redis.call('ttl', KEYS[1])
    if ttl < 1 then ttl = 60 end
    return {ttl, 0}
  end
end
if KEYS[2] == '' then return {0, 1} end
if redis.call('set', KEYS[2], 1, 'NX', 'EX', tonumber(ARGV[2])) then return {0, 1} end
return {0, 0}
"""
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
class SignIn:
    """One organization's sign-in in a browser: which account, since when, which SPs."""

    account_id: str
    generation: int  # the account's generation at sign-in; void once the account's moves on
    authn_instant: float  # the instant of the last factor
    expires_at: float
    sps: dict[str, SpLogin] = field(default_factory=dict)  # service id -> what it was told
    mfa: bool = False  # a second factor (or a passkey) was used in this sign-in
    via: str | None = None  # the upstream identity provider it came through, if any
    authn_class: str | None = None  # what the upstream provider said of the sign-in

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {**vars(self), "sps": {key: vars(login) for key, login in self.sps.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignIn:
        """The inverse of to_dict."""
        sps = {key: SpLogin(**login) for key, login in data["sps"].items()}
        return cls(**{**data, "sps": sps})


@dataclass
class BrowserSession:
    """One browser's sign-ins at the IdP, at most one per organization.

    ``key`` is the digest of the cookie value: the only form of it that Redis ever holds.
    ``sid`` (the cookie value) is known only when the session was just made.
    """

    key: str
    signins: dict[str, SignIn] = field(default_factory=dict)  # organization id -> sign-in
    sid: str | None = None

    def to_json(self) -> str:
        """Serialize for Redis."""
        signins = {org: signin.to_dict() for org, signin in self.signins.items()}
        return json.dumps({"signins": signins}, separators=(",", ":"))

    @classmethod
    def from_json(cls, key: str, raw: bytes | str, now: float) -> BrowserSession:
        """Deserialize a value written by to_json, leaving out expired sign-ins."""
        signins = {
            org: SignIn.from_dict(data)
            for org, data in json.loads(raw)["signins"].items()
            if data["expires_at"] > now
        }
        return cls(key, signins)

    @property
    def expires_at(self) -> float:
        """When the last of its sign-ins ends."""
        return max((signin.expires_at for signin in self.signins.values()), default=0.0)


class Store:
    """The Redis-backed state of the IdP, shared by every worker and host."""

    def __init__(self, client: redis.Redis, session_ttl: int) -> None:
        self.redis = client
        self.session_ttl = session_ttl
        self._remember = client.register_script(REMEMBER)

    # -- sessions ---------------------------------------------------------------

    def sign_in(
        self,
        old: BrowserSession | None,
        organization_id: str,
        account_id: str,
        generation: int,
        mfa: bool = False,
        via: str | None = None,
        authn_class: str | None = None,
    ) -> BrowserSession:
        """A sign-in to the organization starting now, under a new session id (no fixation).

        The old id stops working; the browser's sign-ins to other organizations carry over.
        ``via`` and ``authn_class``: the upstream provider it came through, and the class it
        vouched for.
        """
        now = time.time()
        signin = SignIn(
            account_id, generation, now, now + self.session_ttl, {}, mfa, via, authn_class
        )
        return self._rotate(old, {organization_id: signin})

    def step_up(self, old: BrowserSession, organization_id: str) -> BrowserSession:
        """The organization's sign-in after a second factor, now: multi-factor, its instant
        moved to now, the SPs it served kept, under a new session id."""
        now = time.time()
        signin = old.signins[organization_id]
        raised = SignIn(
            signin.account_id,
            signin.generation,
            now,
            now + self.session_ttl,
            signin.sps,
            True,
            signin.via,
            signin.authn_class,
        )
        return self._rotate(old, {organization_id: raised})

    def _rotate(self, old: BrowserSession | None, changed: dict[str, SignIn]) -> BrowserSession:
        sid = new_token()
        kept = {} if old is None else {k: v for k, v in old.signins.items() if k not in changed}
        session = BrowserSession(_digest(sid), {**kept, **changed}, sid)
        self.save_session(session)
        if old is not None:
            self._forget(old.key)
        return session

    def load_session(self, sid: str | None) -> BrowserSession | None:
        """The live session for a cookie value, or None."""
        if not _plausible(sid):
            return None
        return self._load(_digest(sid))

    def _load(self, key: str) -> BrowserSession | None:
        return _live(key, self.redis.get(_session_key(key)))

    def sso_state(self, sid: str | None) -> SsoState:
        """In one round trip: the browser's session and the change counter."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(VERSION)
        if _plausible(sid):
            pipe.get(_session_key(_digest(sid)))
        results = pipe.execute()
        session = _live(_digest(sid), results[1]) if _plausible(sid) else None
        return SsoState(session, int(results[0] or 0))

    def save_session(
        self,
        session: BrowserSession,
        event: dict[str, Any] | None = None,
        changed: bool = True,
        organization_id: str | None = None,
    ) -> int:
        """Store the session, slide one organization's sign-in, and queue an event with it.

        An unchanged sign-in slid less than REFRESH_AFTER_S ago is not written again (only the
        event is), which keeps repeated SSO cheap. Returns how many events wait in the queue
        (0 when no event was given).
        """
        now = time.time()
        signin = session.signins.get(organization_id) if organization_id else None
        if signin is not None and signin.expires_at - now < self.session_ttl - REFRESH_AFTER_S:
            signin.expires_at = now + self.session_ttl
            changed = True
        pipe = self.redis.pipeline(transaction=False)
        if changed:
            ttl = max(1, int(session.expires_at - now) + 1)
            key = _session_key(session.key)
            pipe.set(key, session.to_json(), ex=ttl)
            pipe.zadd(LIVE_SESSIONS, {key: session.expires_at})
            for each in session.signins.values():
                for sp in each.sps.values():
                    pipe.set(_index_key(sp.session_index), session.key, ex=ttl)
        if event is not None:
            pipe.rpush(EVENTS, json.dumps(event, separators=(",", ":")))
        results = pipe.execute()
        return int(results[-1]) if event is not None else 0

    def session_for_index(self, session_index: str) -> BrowserSession | None:
        """Find a session by a SessionIndex it issued (SLO without the cookie)."""
        key = self.redis.get(_index_key(session_index))
        return self._load(key.decode() if isinstance(key, bytes) else key) if key else None

    def end_signin(self, session: BrowserSession, organization_id: str) -> None:
        """End one organization's sign-in in this browser; the others stay."""
        signin = session.signins.pop(organization_id, None)
        if signin is None:
            return
        indexes = [_index_key(sp.session_index) for sp in signin.sps.values()]
        if indexes:
            self.redis.delete(*indexes)
        if session.signins:
            self.save_session(session)
        else:
            self._forget(session.key)

    def end_session(self, session: BrowserSession) -> None:
        """Forget every sign-in of the browser and their SessionIndex entries."""
        indexes = [
            _index_key(sp.session_index)
            for signin in session.signins.values()
            for sp in signin.sps.values()
        ]
        if indexes:
            self.redis.delete(*indexes)
        self._forget(session.key)

    def _forget(self, key: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(_session_key(key))
        pipe.zrem(LIVE_SESSIONS, _session_key(key))
        pipe.execute()

    def active_sessions(self) -> int:
        """How many browser sessions are live now (expired ones are pruned first)."""
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

    # -- short-lived state of a browser: sign-ins waiting for a factor, enrolments ----

    def hold(self, name: str, data: dict[str, Any], ttl: int) -> None:
        """Keep ``data`` under a name (a digest of it is the key) for ``ttl`` seconds."""
        self.redis.set(_held_key(name), json.dumps(data), ex=ttl)

    def held(self, name: str) -> dict[str, Any] | None:
        """What is held under a name, if it has not expired."""
        raw = self.redis.get(_held_key(name))
        return json.loads(raw) if raw else None

    def release(self, name: str) -> None:
        """Forget what is held under a name."""
        self.redis.delete(_held_key(name))

    def first_use(self, key: str, ttl: int) -> bool:
        """Mark a one-time value (a TOTP step, a WebAuthn challenge) as used: False when it
        already was."""
        return bool(self.redis.set(_seen_key(key), 1, nx=True, ex=ttl))

    # -- anonymous writes: replay cache and pending requests, limited per address ----

    def remember(
        self, address: str, per_minute: int | None, replay_key: str | None, replay_ttl: int
    ) -> Remembered:
        """Count a request that makes the IdP remember something (when ``per_minute`` is
        given) and mark ``replay_key`` as seen, atomically: over the limit, nothing is stored.
        """
        keys = [_limit_key(address), _seen_key(replay_key) if replay_key else ""]
        limit = per_minute if per_minute is not None else -1
        retry, first = self._remember(keys=keys, args=[limit, replay_ttl])
        return Remembered(int(retry), bool(first))

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

    def give_back(self, subject: str) -> None:
        """Return one attempt to a subject (a right password whose sign-in goes on to its
        second factor: the address gets its attempt back, the email's count stays)."""
        self.redis.eval(GIVE_BACK, 1, _throttle_key(subject))

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

    session: BrowserSession | None
    version: int


@dataclass(frozen=True)
class Remembered:
    """The outcome of Store.remember: seconds to wait (0: admitted), and whether the replay
    key was new."""

    retry_after: int
    first_use: bool


def _live(key: str, raw: bytes | str | None) -> BrowserSession | None:
    """The stored session with its live sign-ins; None when it has none left."""
    session = BrowserSession.from_json(key, raw, time.time()) if raw else None
    return session if session is not None and session.signins else None


def _plausible(sid: str | None) -> TypeGuard[str]:
    return bool(sid) and len(sid or "") <= 128


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _session_key(key: str) -> str:
    return PREFIX + "session:" + key


def _held_key(name: str) -> str:
    return PREFIX + "held:" + _digest(name)


def _index_key(session_index: str) -> str:
    return PREFIX + "sidx:" + _digest(session_index)


def _seen_key(message_key: str) -> str:
    return PREFIX + "seen:" + _digest(message_key)


def _limit_key(address: str) -> str:
    return PREFIX + "remember:" + _digest(address)


def _throttle_key(subject: str) -> str:
    return PREFIX + "throttle:" + _digest(subject)
