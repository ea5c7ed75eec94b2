# orq-sidecar: the service on a slim Python, as a non-root user.
# Build: docker build -t orq-sidecar .   Run: docker run -p 8080:8080 orq-sidecar
# The sandbox's layers inside a container: docs/deployment.md.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar sidecar
COPY tools tools
COPY sandbox sandbox
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim-bookworm
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/sidecar --create-home sidecar
COPY --from=build /install /usr/local
COPY manifests /etc/sidecar/manifests
ENV SIDECAR_HOST=0.0.0.0 \
    SIDECAR_PORT=8080 \
    SIDECAR_STATE_DIR=/var/lib/sidecar \
    SIDECAR_MANIFESTS_DIR=/etc/sidecar/manifests \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/sidecar
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["sidecar"]
CMD ["serve"]
