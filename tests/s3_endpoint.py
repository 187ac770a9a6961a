"""The S3 endpoint the tests and benchmarks run on loopback: moto's S3 service, alone, served
by waitress (``python tests/s3_endpoint.py PORT``).

Why not ``python -m moto.server``: that serves every AWS service moto emulates through one
dispatcher, which, for a request signed in its query string, guesses the service under a
process-wide lock by listing moto's own package folder; and its werkzeug server closes the
connection after every reply. On 46 KB GETs that cost about 4 ms of moto's CPU per GET, and
our server a new connection per GET, on the same two cores as the stack measured. moto's S3
app (the same Flask app the dispatcher picks for S3) under a WSGI server that keeps
connections alive answers the same requests for about 1.5 ms; a real object store would not
run on our cores at all.
"""

from __future__ import annotations

import logging
import sys

THREADS = 16  # as many GETs at once as one server process's fetchers (store/s3.FETCHERS)
# Open connections at once. Every server process of a test session keeps its own pools to
# this one endpoint alive (boto3's and the signed GETs', up to 32 each); waitress's default of
# 100 made the next connection wait unanswered once the session had held that many.
CONNECTIONS = 4096


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python tests/s3_endpoint.py PORT", file=sys.stderr)
        return 2
    import resource

    import waitress
    from moto.moto_server.werkzeug_app import create_backend_app

    _, most = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(most, CONNECTIONS + 256), most))
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # a queued request is no news
    waitress.serve(
        create_backend_app("s3"),
        host="127.0.0.1",
        port=int(argv[0]),
        threads=THREADS,
        connection_limit=CONNECTIONS,
        asyncore_use_poll=True,  # select() cannot watch a descriptor above 1023
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
