"""Production gunicorn settings: ``gunicorn -c gunicorn.conf.py 'idp.app:create_app()'``.

Every value can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""

import multiprocessing
import os

bind = os.environ.get("IDP_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
worker_class = "gthread"
threads = 4
timeout = 30  # a stuck worker is replaced
graceful_timeout = 20  # in-flight logins finish on SIGTERM / rolling restarts
keepalive = 5
max_requests = 10000  # recycle workers now and then, with jitter so they do not restart together
max_requests_jitter = 1000
accesslog = None  # the app writes one JSON line per request itself
control_socket_disable = True
# Client addresses and schemes come from X-Forwarded-* only when IDP_TRUSTED_PROXIES > 0
# (handled in the app with werkzeug's ProxyFix); gunicorn itself trusts no forwarder.
forwarded_allow_ips = ""


def on_starting(server):
    """Once, in the master, before any worker serves: check settings, migrate."""
    from idp.hooks import before_serving

    before_serving()


def child_exit(server, worker):
    """Tell the multiprocess metrics collector that a worker is gone."""
    from idp.hooks import worker_exited

    worker_exited(worker.pid)
