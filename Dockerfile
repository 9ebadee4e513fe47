# fashionbench with Jupyter Lab, CPU build by default. docs/docker.md has the commands.
#
#   docker build -t fashionbench .
#   docker run -p 8888:8888 -v fmnist:/data fashionbench            # Jupyter Lab on notebooks/
#   docker run -v fmnist:/data fashionbench fashionbench train basic_cnn
#
# Build arguments:
#   BASE         the base image; python:3.11-slim, or any Debian/Ubuntu image: one without
#                Python (a bare Debian) gets Debian's python3 (3.11 on bookworm) from apt
#   TORCH        the torch requirement, or "skip" to keep the base image's own torch (a
#                pytorch/pytorch CUDA base)
#   TORCH_INDEX  where torch comes from: PyTorch's CPU index by default (PyPI's Linux torch
#                is the CUDA build, gigabytes more); cu12x for a CUDA image; empty to take
#                torch like every other package (PIP_FIND_LINKS, PIP_INDEX_URL)
#   EXTRAS       fashionbench's extras: export (ONNX) and notebook (Jupyter); add sweep
#   PIP_FIND_LINKS, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_CERT
#                pip's own settings, for installing from wheel folders or a local index
#                mounted into the build (podman build -v /opt/wheels:/opt/wheels:ro ...)
ARG BASE=python:3.11-slim
FROM ${BASE}

ARG TORCH=torch==2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS=export,notebook
# Empty unless given: pip ignores an empty setting, so its defaults hold.
ARG PIP_FIND_LINKS=
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_CERT=

# Python if the base has none (a bare Debian), and CA certificates where they are missing:
# fashionbench downloads the dataset over HTTPS with the system's trust store. Nothing is
# installed on python:3.11-slim. Then the user that runs everything, never root: uid 1000
# when free (the usual first user of a host, so files in bind-mounted folders match).
RUN set -eu; \
    need=""; \
    python3 -c 'import ensurepip, venv' 2>/dev/null || need="python3 python3-venv"; \
    if command -v dpkg >/dev/null && ! dpkg -s ca-certificates >/dev/null 2>&1; then need="$need ca-certificates"; fi; \
    if [ -n "$need" ]; then \
        apt-get update -qq; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null; \
        rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; \
    fi; \
    python3 -c 'import sys; assert sys.version_info >= (3, 10), "fashionbench needs Python 3.10 or newer"'; \
    if getent passwd 1000 >/dev/null; then useradd --create-home fashion; \
    else useradd --create-home --uid 1000 fashion; fi; \
    mkdir -p /work/runs /data; \
    chown fashion:fashion /work /work/runs /data

# A venv keeps pip away from the system's Python. With TORCH=skip it sees the base's
# site-packages, where a pytorch/pytorch image keeps its CUDA torch.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
# torch alone and first: this layer, the largest, stays cached while the code changes.
RUN set -eu; \
    if [ "$TORCH" = skip ]; then python3 -m venv --system-site-packages /opt/venv; \
    else python3 -m venv /opt/venv; fi; \
    if [ "$TORCH" != skip ]; then \
        pip install --no-cache-dir --disable-pip-version-check --quiet \
            ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH"; \
    fi

# Only what the package is built from (.dockerignore keeps out runs, data, the venv).
COPY pyproject.toml README.md LICENSE /tmp/fashionbench/
COPY src /tmp/fashionbench/src
COPY recipes /tmp/fashionbench/recipes
# A regular install, not editable: the image does not depend on /tmp/fashionbench staying.
RUN set -eu; \
    pip install --no-cache-dir --disable-pip-version-check --quiet "/tmp/fashionbench[$EXTRAS]"; \
    rm -rf /tmp/fashionbench; \
    fashionbench --help >/dev/null

COPY docker/jupyter_server_config.py /etc/jupyter/jupyter_server_config.py
COPY docker/entrypoint.sh /usr/local/bin/fashionbench-entrypoint
COPY --chown=fashion:fashion notebooks /work/notebooks

# The dataset goes in a volume mounted at /data: downloaded on first use into a new named
# volume (Docker and podman give it /data's owner, the user), or a folder holding the four
# files mounted read-only. No VOLUME line: it would leave an anonymous volume behind every
# `docker run --rm`-less run, and buildah run lays it over a -v mount at /data.
ENV FASHIONBENCH_DATA_DIR=/data
USER fashion
# Runs go to /work/runs (`--out` defaults to runs/ under the working folder).
WORKDIR /work
EXPOSE 8888
ENTRYPOINT ["fashionbench-entrypoint"]
CMD []
