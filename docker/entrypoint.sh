#!/bin/sh
# The image's entrypoint. With no arguments: Jupyter Lab on /work/notebooks, port 8888 on
# every interface, behind a token. With arguments: run them (`fashionbench train ...`),
# exec'd so that the command is PID 1 and gets docker stop's SIGTERM itself.
set -eu

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

# Jupyter treats an empty JUPYTER_TOKEN as "no token given" and would quietly invent one;
# someone who set it empty most likely meant "no authentication", which this image never
# serves (port 8888 is published to the network). Say so instead of guessing.
if [ "${JUPYTER_TOKEN+set}" = set ] && [ -z "$JUPYTER_TOKEN" ]; then
    echo "fashionbench image: JUPYTER_TOKEN is empty; Jupyter Lab is never served without a token." \
         "Unset it for a random one (printed in the log), or give one: -e JUPYTER_TOKEN=\$(openssl rand -hex 24)" >&2
    exit 2
fi
if [ -n "${JUPYTER_TOKEN_FILE:-}" ] && [ -z "${JUPYTER_TOKEN:-}" ] && [ ! -s "$JUPYTER_TOKEN_FILE" ]; then
    echo "fashionbench image: JUPYTER_TOKEN_FILE $JUPYTER_TOKEN_FILE is missing or empty;" \
         "Jupyter Lab is never served without a token." >&2
    exit 2
fi

# The token: JUPYTER_TOKEN when given (Jupyter prints it masked, as token=...); otherwise
# Jupyter generates a random one and prints the URLs that carry it.
# Settings (address, port, folder) are in /etc/jupyter/jupyter_server_config.py.
exec jupyter lab
