"""A plain WSGI application: what gunicorn serves in the example playbook."""


def application(environ, start_response):
    body = b"Hello from gunicorn, set up by converge.\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
