# Production image: gunicorn serving idp.app:create_app() as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY idp ./idp
RUN pip install -c constraints.txt . \
 && useradd --system --uid 10001 --home-dir /app idp \
 && mkdir -p /app/var \
 && chown idp /app/var
COPY gunicorn.conf.py ./
COPY config ./config

USER idp
EXPOSE 8000

# Required in production (see README): IDP_BASE_URL, IDP_DATABASE_URL, IDP_REDIS_URL,
# IDP_SECRET_KEY. Optional: IDP_PROVISION_DIR=/app/config/services, IDP_TRUSTED_PROXIES, ...
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"

CMD ["gunicorn", "-c", "gunicorn.conf.py", "idp.app:create_app()"]
