"""Debian's nginx running deploy/nginx.conf as docs/deploy.md renders it, unprivileged, every
path in a scratch directory: the proxy of the scale suite (tests/scale)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support import ROOT, require_binary

NGINX_SITE = ROOT / "deploy" / "nginx.conf"
# The names docs/deploy.md has envsubst fill in, and only those.
SITE_VARIABLES = ("LISTEN", "SERVER_NAME", "UPSTREAMS")


def render_site(values: dict[str, str]) -> str:
    """deploy/nginx.conf with `${NAME}` filled in for the documented names, as
    `envsubst '${LISTEN} ${SERVER_NAME} ${UPSTREAMS}'` does (nginx's own $variables stay)."""
    text = NGINX_SITE.read_text()
    for name in SITE_VARIABLES:
        text = text.replace("${" + name + "}", values[name])
    left = re.findall(r"\$\{[A-Z_]+\}", text)
    assert not left, f"deploy/nginx.conf names variables docs/deploy.md does not: {left}"
    return text


def main_config(workdir: Path, site: Path, connections: int = 1024) -> str:
    """What Debian's /etc/nginx/nginx.conf provides around a conf.d site, with every path
    in `workdir` so nginx runs without touching the system's; `connections` per worker (each
    proxied request or stream holds two: the client's and the server's)."""
    temp = "\n".join(
        f"    {kind}_temp_path {workdir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""worker_processes 1;
worker_rlimit_nofile {connections + 64};
error_log {workdir / "error.log"} info;
events {{ worker_connections {connections}; }}
http {{
    access_log {workdir / "access.log"};
{temp}
    include {site};
}}
"""


def start_nginx(workdir: Path, site_text: str, connections: int = 1024) -> subprocess.Popen[bytes]:
    """Start nginx (in the foreground) with the rendered site, every path in `workdir`."""
    nginx = require_binary("nginx", "nginx is missing: apt-get install -y nginx (.ci/run does)", "/usr/sbin")
    site = workdir / "roundtable.conf"
    site.write_text(site_text)
    conf = workdir / "nginx.conf"
    conf.write_text(main_config(workdir, site, connections))
    command = [nginx, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c", str(conf)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    directives = f"daemon off; pid {workdir / 'nginx.pid'};"
    return subprocess.Popen([*command, "-g", directives], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
