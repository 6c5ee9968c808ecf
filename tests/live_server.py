"""A real uvicorn server for tests that need HTTP (the openai client, a judge endpoint)."""

import contextlib
import socket
import threading
import time


@contextlib.contextmanager
def serving(app, **config):
    """A real uvicorn server on a free loopback port, in a thread; yields its base URL. `config`: more
    uvicorn.Config arguments (e.g. log_config=None, log_level="info" to see the access log)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = {"log_level": "warning", "timeout_graceful_shutdown": 1, **config}
    server = uvicorn.Server(uvicorn.Config(app, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
