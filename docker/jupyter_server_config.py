# Jupyter Lab as the image serves it, read from /etc/jupyter (every Jupyter reads that
# folder). The token is not set here: it comes from $JUPYTER_TOKEN, or Jupyter generates a
# random one; docker/entrypoint.sh refuses an empty one.
c = get_config()  # noqa: F821 -- defined by Jupyter when it reads this file

# Inside a container 127.0.0.1 is unreachable from the host: listen on every interface and
# let `-p 8888:8888` decide who can connect.
c.ServerApp.ip = "0.0.0.0"
# The port is Jupyter's default, 8888, or $JUPYTER_PORT; a busy one is an error rather than a
# silent move to 8889, which `-p 8888:8888` would not reach.
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False  # there is no browser in the image
c.ServerApp.root_dir = "/work/notebooks"
