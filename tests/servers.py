"""Real servers on 127.0.0.1 for the remote-dataset tests: a Range-capable HTTP server and an S3 server.

HTTP: aiohttp's static file handler (it honours Range requests; Python's
``http.server`` does not) in a thread with its own event loop, counting GET requests
per path. S3: moto's ``ThreadedMotoServer``, an S3-protocol server process, with
dummy credentials. Both bind to 127.0.0.1 on a free port and stop with the fixture.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from pathlib import Path


class HttpServer:
    """Serves ``root`` at ``self.url``; ``self.gets`` counts GET requests per path."""

    def __init__(self, root: Path) -> None:
        from aiohttp import web

        self.gets: Counter = Counter()

        @web.middleware
        async def count(request, handler):
            if request.method == "GET":
                self.gets[request.path.lstrip("/")] += 1
            return await handler(request)

        self.app = web.Application(middlewares=[count])
        self.app.router.add_static("/", str(root))
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class S3Server:
    """moto's S3 server on 127.0.0.1; ``upload(folder, bucket, prefix)`` puts a dataset there."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def environment(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def client(self):
        import boto3

        env = self.environment()
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            region_name=env["AWS_DEFAULT_REGION"],
        )

    def upload(self, folder: Path, bucket: str, prefix: str) -> str:
        client = self.client()
        client.create_bucket(Bucket=bucket)
        for file in sorted(folder.iterdir()):
            if file.is_file():
                client.put_object(Bucket=bucket, Key=f"{prefix}/{file.name}", Body=file.read_bytes())
        return f"s3://{bucket}/{prefix}"

    def stop(self) -> None:
        self.server.stop()
