"""The NET_ADMIN helper image, for when chaoskit cannot enter namespaces from the host.

Built locally on first use ``FROM chaoskit/base:bookworm`` (no registry needed); the base already
carries iproute2 and iptables, the build only makes sure of it, so a user's slimmer base works too.
"""

from __future__ import annotations

import io
from typing import Any

import docker.errors

from chaoskit.errors import FaultError
from chaoskit.images import BASE_TAG, ensure_base_image, image_exists

HELPER_TAG = "chaoskit/nettools:1"

DOCKERFILE = f"""FROM {BASE_TAG}
RUN command -v iptables >/dev/null && command -v tc >/dev/null || \\
    (apt-get update && apt-get install -y --no-install-recommends iptables iproute2 \\
     && rm -rf /var/lib/apt/lists/*)
LABEL chaoskit.helper.image="1"
CMD ["sleep", "900"]
"""


def ensure_helper_image(client: Any, tag: str = HELPER_TAG, log: Any = None) -> str:
    """Return ``tag``, building it (and the base image, if missing) on first use."""
    if image_exists(client, tag):
        return tag
    try:
        ensure_base_image(client, log=log or (lambda _msg: None))
        client.images.build(fileobj=io.BytesIO(DOCKERFILE.encode()), tag=tag, rm=True, forcerm=True)
    except (docker.errors.DockerException, RuntimeError) as exc:
        raise FaultError(f"cannot build the network helper image {tag}: {exc}") from exc
    return tag
