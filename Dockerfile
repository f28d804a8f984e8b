# Slim image running `automation-server serve` as a non-root user.
# bubblewrap needs unprivileged user namespaces in the container runtime
# (e.g. Docker with a seccomp profile allowing clone(CLONE_NEWUSER)); otherwise
# set AUTOMATION_SANDBOX=none and isolate at the container level.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap slirp4netns python3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 automation

WORKDIR /app
COPY pyproject.toml README.md ./
COPY automation_server ./automation_server
COPY sdk ./sdk
COPY presets ./presets
COPY migrations ./migrations
RUN pip install --no-cache-dir -e . \
 && mkdir -p /data && chown automation /data

USER automation
ENV AUTOMATION_DATA_DIR=/data \
    AUTOMATION_HOST=0.0.0.0 \
    AUTOMATION_PORT=8080 \
    AUTOMATION_RUN_PYTHON=/usr/bin/python3
EXPOSE 8080
VOLUME ["/data"]
CMD ["automation-server", "serve"]
