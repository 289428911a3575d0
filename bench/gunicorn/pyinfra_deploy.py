"""playbooks/gunicorn.yml written for pyinfra (bench/first-apply.sh runs both on the same fresh
container): the same packages, files, templates (playbooks/templates/, Jinja2 for both), units and
triggers, as a careful pyinfra user writes them: daemon-reload when a unit file changed, a
try-restart of gunicorn (restart only if it runs, as converge's restart_triggers), and `nginx -t`
before nginx reloads. Offline: wheels from /srv/wheels, no index."""
from io import StringIO
from pathlib import Path

from pyinfra.operations import apt, files, pip, server, systemd

PLAYBOOKS = Path(__file__).resolve().parent.parent.parent / "playbooks"
V = dict(site="mysite", user="vagrant", group="www-data", socket="/run/gunicorn/socket",
         server_name="localhost", workers=3)
V["app_dir"] = f"/srv/{V['site']}"
V["venv"] = f"/home/{V['user']}/.venvs/{V['site']}"
WHEELS = "/srv/wheels"


def template(name):
    """playbooks/templates/NAME, with its `user` and `group` taken from app_user and app_group:
    files.template keeps those two keywords for the owner of the file it writes."""
    text = (PLAYBOOKS / "templates" / name).read_text()
    return StringIO("{% set user = app_user %}{% set group = app_group %}" + text)


T = {k: v for k, v in V.items() if k not in ("user", "group")}
T.update(app_user=V["user"], app_group=V["group"])


def changed(*ops):
    return lambda: any(op.did_change() for op in ops)


apt.packages(name="packages", packages=["nginx", "python3-venv"], update=True, cache_time=86400)
server.user(name="user", user=V["user"])
files.directory(name="app directory", path=V["app_dir"], user=V["user"], group=V["group"])
app = files.put(name="app", src=str(PLAYBOOKS / "files/mysite/wsgi.py"),
                dest=f"{V['app_dir']}/wsgi.py", user=V["user"], group=V["group"])
files.directory(name="venvs directory", path=f"/home/{V['user']}/.venvs", user=V["user"])
venv = pip.packages(name="virtualenv", packages=["gunicorn==23.0.0"], virtualenv=V["venv"],
                    virtualenv_kwargs={"venv": True, "python": "python3"},
                    extra_install_args=f"--no-index --find-links {WHEELS}",
                    _sudo=True, _sudo_user=V["user"])
socket = files.template(name="gunicorn.socket", src=template("gunicorn.socket.j2"),
                        dest="/etc/systemd/system/gunicorn.socket", **T)
service = files.template(name="gunicorn.service",
                         src=template("gunicorn.service.j2"),
                         dest="/etc/systemd/system/gunicorn.service", **T)
systemd.daemon_reload(name="daemon-reload", _if=changed(socket, service))
systemd.service(name="socket enabled and listening", service="gunicorn.socket",
                running=True, enabled=True)
server.shell(name="restart gunicorn", commands=["systemctl try-restart gunicorn.service"],
             _if=changed(app, venv, service))
site = files.template(name="nginx site", src=template("nginx-site.j2"),
                      dest=f"/etc/nginx/sites-available/{V['site']}", **T)
link = files.link(name="nginx site enabled", path=f"/etc/nginx/sites-enabled/{V['site']}",
                  target=f"../sites-available/{V['site']}")
default = files.link(name="nginx default site removed", path="/etc/nginx/sites-enabled/default",
                     present=False)
server.shell(name="test nginx", commands=["nginx -t"], _if=changed(site, link, default))
systemd.service(name="reload nginx", service="nginx", reloaded=True,
                _if=changed(site, link, default))
