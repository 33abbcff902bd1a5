# roomwire's image: the `roomwire` command from a wheel, configured by ROOMWIRE_* variables.
#   docker build -t roomwire .
#   docker run --network host -e ROOMWIRE_SECRET="$(openssl rand -base64 32)" roomwire
# Media: aiortc gives every peer connection a random UDP port on the container's addresses, and
# no port range can be published for that; run with host networking or hand clients TURN
# credentials (ROOMWIRE_TURN_*): docs/operations.md, "Image" and "Behind NAT".

# 1. The browser client's npm packages (socket.io-client), exactly as locked.
FROM node:22-bookworm-slim AS client
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# 2. The wheel: the Python packages and the browser client with socket.io-client in it.
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY signaling/ signaling/
COPY media/ media/
COPY web/ web/
COPY --from=client /src/web/node_modules/ web/node_modules/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir dist .

# 3. The runtime: the wheel (with the Redis extra for many nodes) and nothing else of the source.
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=wheel /src/dist/ /tmp/dist/
# DL3013 wants pinned versions: this is our own wheel, pinned by its file; its dependencies are
# pinned as pyproject.toml pins them (aiortc exactly).
# hadolint ignore=DL3013
RUN for wheel in /tmp/dist/roomwire-*.whl; do pip install --no-cache-dir "${wheel}[redis]"; done \
    && rm -rf /tmp/dist \
    && groupadd --system --gid 10001 roomwire \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin roomwire
USER 10001:10001
# ROOMWIRE_SECRET has no default: `roomwire serve` refuses to start without it and says why.
ENV ROOMWIRE_HOST=0.0.0.0 \
    ROOMWIRE_PORT=8080 \
    ROOMWIRE_LOG_LEVEL=info
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['ROOMWIRE_PORT'] + '/healthz', timeout=2)"]
CMD ["roomwire", "serve"]
