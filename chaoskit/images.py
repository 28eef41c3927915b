"""Base images without a registry.

The stacks chaoskit ships build ``FROM chaoskit/base:bookworm``. Where a registry is reachable,
that tag is made from ``debian:bookworm-slim`` plus Debian packages; where it is not (air-gapped
CI, this project's build machines) it is made with ``debootstrap`` and ``docker import``. Either
way the result is cached by tag, so the same command works unchanged everywhere.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
import docker.errors

BASE_TAG = "chaoskit/base:bookworm"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "python3",
    "python3-psycopg",
    "python3-httpx",
    "postgresql",
    "iproute2",
    "procps",
    "iptables",
    "netcat-openbsd",
    "ca-certificates",
)


class ImageError(RuntimeError):
    pass


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_base_image(
    client: docker.DockerClient | None = None,
    tag: str = BASE_TAG,
    packages: tuple[str, ...] = PACKAGES,
    log=print,
) -> str:
    """Return ``tag``, building it first if it is missing."""
    client = client or docker.from_env()
    if image_exists(client, tag):
        return tag
    try:
        _from_registry(client, tag, packages, log)
    except Exception as exc:  # no registry: the normal case on air-gapped machines
        log(f"registry base not available ({type(exc).__name__}); building {tag} with debootstrap")
        _from_debootstrap(client, tag, packages, log)
    return tag


def _from_registry(client: docker.DockerClient, tag: str, packages: tuple[str, ...], log) -> None:
    client.images.pull("debian", tag=f"{SUITE}-slim")
    dockerfile = (
        f"FROM debian:{SUITE}-slim\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends "
        + " ".join(packages)
        + " && rm -rf /var/lib/apt/lists/*\nENV LANG=C.UTF-8\n"
    )
    log(f"building {tag} from debian:{SUITE}-slim")
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)


def _from_debootstrap(client: docker.DockerClient, tag: str, packages: tuple[str, ...], log) -> None:
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "cannot build the base image: no registry and no debootstrap "
            "(install it: apt-get install debootstrap)"
        )
    with tempfile.TemporaryDirectory(prefix="chaoskit-rootfs-") as tmp:
        root = Path(tmp) / "root"
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(packages)}",
            SUITE,
            str(root),
            MIRROR,
        ]
        log(f"debootstrap {SUITE} (about a minute)")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ImageError(f"debootstrap failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(
            ["docker", "import", "-c", 'CMD ["/bin/bash"]', "-c", "ENV LANG=C.UTF-8", "-", tag],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
        )
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise ImageError(f"docker import failed: {imp.stderr[-2000:]}")
    log(f"built {tag}")
