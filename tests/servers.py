"""Real servers on 127.0.0.1 for the remote-dataset tests: a Range-capable HTTP server and an S3 server.

HTTP: aiohttp's static file handler (it honours Range requests; Python's
``http.server`` does not) in a thread with its own event loop, counting GET requests
per path. Given a ``rate`` (bytes/s) and a ``latency`` (seconds per request) it plays a
slower network: every response waits ``latency`` before its first byte, and all
responses share one link of ``rate`` bytes/s (a byte-range handler of our own paces
the writes). S3: moto's ``ThreadedMotoServer``, an S3-protocol server process, with
dummy credentials. Both bind to 127.0.0.1 on a free port and stop with the fixture.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import Counter
from pathlib import Path


class HttpServer:
    """Serves ``root`` at ``self.url``; ``self.gets`` counts GET requests per path and
    ``self.requested`` lists the paths of GET requests in the order they arrived."""

    CHUNK = 1 << 18  # bytes per paced write
    BURST = 0.01  # seconds of link time an idle link may bank: timer jitter does not slow it below its rate

    def __init__(self, root: Path, *, rate: float | None = None, latency: float = 0.0) -> None:
        from aiohttp import web

        self.root, self.rate, self.latency = Path(root).resolve(), rate, latency
        self.gets: Counter = Counter()
        self.requested: list[str] = []
        self._link_free = 0.0  # when the shared link is next free (event-loop time)

        @web.middleware
        async def count(request, handler):
            if request.method == "GET":
                self.gets[request.path.lstrip("/")] += 1
                self.requested.append(request.path.lstrip("/"))
            if self.latency:
                await asyncio.sleep(self.latency)
            return await handler(request)

        self.app = web.Application(middlewares=[count])
        if rate is None:
            self.app.router.add_static("/", str(root))
        else:
            self.app.router.add_get("/{path:.+}", self._paced)
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def _paced(self, request):
        """A file of ``root``, whole or one byte range, written no faster than the shared link allows."""
        from aiohttp import web

        path = (self.root / request.match_info["path"]).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise web.HTTPNotFound()
        size = path.stat().st_size
        ranged = request.http_range
        start, stop = ranged.indices(size)[:2] if "Range" in request.headers else (0, size)
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(stop - start), "Content-Type": "application/x-tar"}
        if "Range" in request.headers:
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        response = web.StreamResponse(status=206 if "Range" in request.headers else 200, headers=headers)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        try:
            with path.open("rb") as f:
                f.seek(start)
                for offset in range(start, stop, self.CHUNK):
                    chunk = f.read(min(self.CHUNK, stop - offset))
                    await self._pace(len(chunk))
                    await response.write(chunk)
            await response.write_eof()
        except ConnectionError:  # the client went away (a reader stopped early): nothing more to send
            pass
        return response

    async def _pace(self, size: int) -> None:
        """Wait until ``size`` more bytes have passed the shared link."""
        now = self.loop.time()
        self._link_free = max(now - self.BURST, self._link_free) + size / self.rate
        if self._link_free > now:
            await asyncio.sleep(self._link_free - now)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class S3Server:
    """moto's S3 server on 127.0.0.1; ``upload(folder, bucket, prefix)`` puts a dataset there.

    ``process=True`` runs it in a process of its own, as a real store is: in a thread, its
    Python request handling shares the caller's interpreter lock, and a DataLoader's main
    loop in that process waits for it (the benchmark's readers would be measured against
    our own server's appetite)."""

    def __init__(self, *, process: bool = False) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self.process = None
        if process:
            self.process, port = self._start_process()
            self.endpoint = f"http://127.0.0.1:{port}"
            return
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    @staticmethod
    def _start_process():
        """``python -m moto.server`` on a free port of 127.0.0.1, once it accepts connections."""
        import socket
        import subprocess
        import sys
        import time

        with socket.socket() as probe:  # a port free now (the server binds it a moment later)
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return process, port
            except OSError:
                time.sleep(0.05)
        process.kill()
        raise RuntimeError(f"moto's S3 server did not start on 127.0.0.1:{port}")

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

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (user + system; 0 for the threaded server)."""
        if self.process is None:
            return 0.0
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        else:
            self.server.stop()
