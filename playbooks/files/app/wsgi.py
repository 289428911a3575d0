"""The app that playbooks/app-from-git.yml deploys from a git repository: a plain WSGI
application (a Django project's wsgi.py plays the same part)."""

GREETING = "Hello from the git checkout, deployed by converge."


def application(environ, start_response):
    body = (GREETING + "\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
