"""The images the Docker backend runs (base, node, toxiproxy, and a host binary such as etcd on the
base image): built locally once, tagged by a hash of their inputs."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import docker
from rich.progress import Progress

from harness.docker.base import content_hash, ensure_base
from harness.docker.paths import NODES_DIR, docker_dir
from harness.docker.progress import step
from harness.errors import SetupError
from harness.toxiproxy_server import find_server_binary

__all__ = ["Images", "ensure_host_binary_image", "ensure_images", "host_binary_context", "node_context_files"]

BASE_REPOSITORY = "raftchaos/base"
NODE_REPOSITORY = "raftchaos/node"
TOXIPROXY_REPOSITORY = "raftchaos/toxiproxy"
TOXIPROXY_DOCKERFILE = Path(__file__).with_name("toxiproxy.Dockerfile")
_STEP = re.compile(r"^Step (\d+)/(\d+)")
_REPO_UNSAFE = re.compile(r"[^a-z0-9_.-]+")
# A host binary on the base image, at the path it has on the host (the base image is the host's
# Debian release, so a binary from a Debian package finds its libc there).
HOST_BINARY_DOCKERFILE = """ARG BASE_IMAGE
FROM ${{BASE_IMAGE}}
COPY binary {path}
LABEL raftchaos.image=host-binary raftchaos.binary={path}
"""


@dataclass(frozen=True)
class Images:
    """Names (``repository:tag``) of the images a Docker run uses; tags are content hashes."""

    base: str
    node: str
    toxiproxy: str


def ensure_images(client: docker.DockerClient, progress: Progress | None = None) -> Images:
    """Build whichever of the three images is missing for the current inputs and return their names.

    Cheap when nothing changed (hashing ~15 MiB of inputs, three image lookups). Raises SetupError
    when a build fails, with the builder's error line.
    """
    base = ensure_base(client, progress, BASE_REPOSITORY)
    node_files = node_context_files(NODES_DIR)
    node = _ensure_built(client, progress, NODE_REPOSITORY, node_files, base)
    binary = find_server_binary()
    proxy_base = "scratch" if _is_static_elf(binary) else base
    proxy_files = {"Dockerfile": TOXIPROXY_DOCKERFILE.read_bytes(), "toxiproxy-server": binary.read_bytes()}
    toxiproxy = _ensure_built(client, progress, TOXIPROXY_REPOSITORY, proxy_files, proxy_base)
    return Images(base=base, node=node, toxiproxy=toxiproxy)


def host_binary_context(binary: Path) -> tuple[str, dict[str, bytes]]:
    """The repository name (``raftchaos/<binary name>``) and build context of the image holding the
    host file ``binary`` at its own absolute path; SetupError (one line) when it is not a file."""
    if not binary.is_absolute():
        raise SetupError(f"host binary {binary} must be an absolute path (it keeps that path in the image)")
    try:
        data = binary.read_bytes()
    except OSError as exc:
        raise SetupError(f"host binary {binary} cannot be read: {exc.strerror or exc}") from None
    name = _REPO_UNSAFE.sub("-", binary.name.lower()).strip("-.") or "binary"
    return f"raftchaos/{name}", {"Dockerfile": HOST_BINARY_DOCKERFILE.format(path=binary).encode(), "binary": data}


def ensure_host_binary_image(client: docker.DockerClient, progress: Progress | None, base: str,
                             binary: Path) -> str:
    """``raftchaos/<name>:<hash of base and the binary>``, built on the base image if missing: offline
    (no registry, the file comes from this machine) and cheap once built (one hash, one lookup)."""
    repository, files = host_binary_context(binary)
    return _ensure_built(client, progress, repository, files, base)


def node_context_files(root: Path) -> dict[str, bytes]:
    """The node image's build context: ``nodes/`` minus what its .dockerignore drops (caches, hidden files).

    Keys are paths relative to ``root`` (``Dockerfile`` at the top, as ``docker build nodes/`` sees it).
    """
    if not (root / "Dockerfile").is_file():
        raise SetupError(f"{root / 'Dockerfile'} is missing: the node image cannot be built")
    files: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        hidden = any(part.startswith(".") or part == "__pycache__" for part in rel.parts)
        if (
            not path.is_file()
            or path.suffix in (".pyc", ".pyo")
            or (hidden and rel.as_posix() != ".dockerignore")
        ):
            continue
        files[rel.as_posix()] = path.read_bytes()
    return files


def _ensure_built(
    client: docker.DockerClient,
    progress: Progress | None,
    repository: str,
    files: dict[str, bytes],
    base: str,
) -> str:
    digest = hashlib.sha256()
    for rel, data in sorted(files.items()):
        digest.update(f"{rel}\0{len(data)}\0".encode())
        digest.update(data)
    name = f"{repository}:{content_hash({'base': base, 'files': digest.hexdigest()})}"
    try:
        client.images.get(name)
        return name
    except docker.errors.ImageNotFound:
        pass
    with step(progress, f"docker: building {name}", total=None) as current:
        stream = client.api.build(
            fileobj=_tar(files.items()),
            custom_context=True,
            tag=name,
            buildargs={"BASE_IMAGE": base},
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
            labels={"raftchaos.inputs": name.rsplit(":", 1)[1]},
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise SetupError(f"building {name} failed: {_one_line(detail)}; fix that input and rerun `make docker-setup`")
            line = str(chunk.get("stream", "")).strip()
            match = _STEP.match(line)
            if match:
                current.advance(1, total=float(match.group(2)))
            if line:
                current.note(line)
        try:
            client.images.get(name)
        except docker.errors.ImageNotFound:
            raise SetupError(f"building {name} ended without the image; see {docker_dir() / 'dockerd.log'} "
                              "and rerun `make docker-setup`") from None
        current.finish("built")
    return name


def _one_line(text: object) -> str:
    return " / ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())[:400]


def _tar(files: Iterable[tuple[str, bytes]]) -> io.BytesIO:
    """An uncompressed build-context tarball; fixed owner and mtime so equal inputs give equal bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for rel, data in sorted(files):
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            info.mode = 0o755 if data[:4] == b"\x7fELF" else 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _is_static_elf(path: Path) -> bool:
    """True when the ELF at ``path`` has no PT_INTERP program header (needs no dynamic loader/libc)."""
    with open(path, "rb") as fh:
        header = fh.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:  # only 64-bit ELF is expected here
            return False
        endian = "<" if header[5] == 1 else ">"
        (phoff,) = struct.unpack_from(endian + "Q", header, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", header, 54)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    types = (struct.unpack_from(endian + "I", table, i * phentsize)[0] for i in range(phnum))
    return 3 not in types  # PT_INTERP
