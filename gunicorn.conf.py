"""Production gunicorn settings: ``gunicorn -c gunicorn.conf.py 'idp.app:create_app()'``.

Every value can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""

import os

from idp.hooks import LOGCONFIG

bind = os.environ.get("IDP_BIND", "0.0.0.0:8000")
# The CPUs this process may run on (a container's cpuset), not every CPU of the host. Each
# worker holds up to 5 (at most 15) PostgreSQL connections: size max_connections for all hosts.
workers = int(os.environ.get("WEB_CONCURRENCY", len(os.sched_getaffinity(0)) * 2 + 1))
worker_class = "gthread"
threads = 4
timeout = 30  # a stuck worker is replaced
graceful_timeout = 20  # in-flight logins finish on SIGTERM / rolling restarts
keepalive = 5
# A signed HTTP-Redirect AuthnRequest with a 1024-byte RelayState (CONTRACT §4) is over
# 4 KB once URL-encoded: gunicorn's default request line limit (4094) would answer 414.
limit_request_line = 8190
max_requests = 10000  # recycle workers now and then, with jitter so they do not restart together
max_requests_jitter = 1000
# Worker heartbeats on tmpfs: a slow or overlay disk (containers) must not stall them.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 (gunicorn mkstemps)
accesslog = None  # the app writes one JSON line per request itself
logconfig_dict = LOGCONFIG  # gunicorn's own lines as JSON too
control_socket_disable = True
# Client addresses and schemes come from X-Forwarded-* only when IDP_TRUSTED_PROXIES > 0
# (handled in the app with werkzeug's ProxyFix); gunicorn itself trusts no forwarder.
forwarded_allow_ips = ""


def on_starting(server):
    """Once, in the master, before any worker serves: check settings, migrate, provision."""
    from idp.hooks import before_serving

    before_serving()


def child_exit(server, worker):
    """Tell the multiprocess metrics collector that a worker is gone."""
    from idp.hooks import worker_exited

    worker_exited(worker.pid)
