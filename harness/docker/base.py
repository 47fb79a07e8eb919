"""The base image: a minimal Debian bookworm with python3, debootstrapped from the machine's apt mirror and imported."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker
from rich.progress import Progress

from harness.docker.apt import ensure_commands, tail
from harness.docker.paths import cache_dir
from harness.docker.progress import Step, step
from harness.errors import SetupError

SUITE = "bookworm"
VARIANT = "minbase"
INCLUDE = ("python3",)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
RECIPE_VERSION = 1  # bump when the steps below change what the rootfs contains
CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "ENV PYTHONDONTWRITEBYTECODE=1",
    'CMD ["python3"]',
    "LABEL raftchaos.image=base",
)
# debootstrap's phases in the order it prints them; the bar advances one per phase.
PHASES = ("Retrieving", "Validating", "Extracting", "Installing", "Unpacking", "Configuring", "Base system")
_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def debian_mirror() -> str:
    """The mirror this machine's apt uses for bookworm (``$RAFTCHAOS_DEBIAN_MIRROR`` overrides).

    Reads one-line ``.list`` and deb822 ``.sources`` files; falls back to deb.debian.org.
    """
    override = os.environ.get("RAFTCHAOS_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    files: list[Path] = []
    for source in _SOURCES:
        if source.is_file():
            files.append(source)
        elif source.is_dir():
            files.extend(sorted(p for p in source.iterdir() if p.suffix in (".list", ".sources")))
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        for uri, suites in entries:
            if SUITE in suites and uri.startswith(("http://", "https://")):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _one_line_entries(text: str) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", raw.split("#", 1)[0]).split()  # drop [options]
        if len(words) >= 3 and words[0] == "deb":
            out.append((words[1], [words[2]]))
    return out


def _deb822_entries(text: str) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append((uri, fields.get("suites", "").split()))
    return out


def base_inputs() -> dict[str, object]:
    """Everything that decides the base image's content; its hash is the image tag."""
    return {
        "recipe": RECIPE_VERSION,
        "suite": SUITE,
        "variant": VARIANT,
        "include": list(INCLUDE),
        "mirror": debian_mirror(),
        "arch": _debian_arch(),
        "changes": list(CHANGES),
    }


def content_hash(inputs: object) -> str:
    """A short, stable hash of JSON-serialisable inputs (12 hex digits; used as an image tag)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]


def ensure_base(client: docker.DockerClient, progress: Progress | None, repository: str) -> str:
    """``<repository>:<hash>``, importing it from the cached (or freshly debootstrapped) rootfs if missing."""
    inputs = base_inputs()
    tag = content_hash(inputs)
    name = f"{repository}:{tag}"
    if _has_image(client, name):
        return name
    tarball = cache_dir() / f"base-rootfs-{tag}.tar"
    if not tarball.is_file():
        _debootstrap(inputs, tarball, progress)
    with step(progress, f"docker: importing {name}") as current:
        current.note(f"{tarball.stat().st_size / 2**20:.0f} MiB rootfs")
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag, changes=list(CHANGES))
        if not _has_image(client, name):
            raise SetupError(f"docker import of {tarball} did not produce {name}")
        current.finish("imported")
    return name


def _has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def _debian_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _debootstrap(inputs: dict[str, object], tarball: Path, progress: Progress | None) -> None:
    if os.geteuid() != 0:
        raise SetupError(
            "building the base image needs root (debootstrap); run as root or provide a Docker base image"
        )
    ensure_commands({"debootstrap": "debootstrap", "tar": "tar"}, progress)
    log_path = tarball.with_suffix(".log")
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=tarball.parent) as tmp:
        target = Path(tmp) / "rootfs"
        command = [
            "debootstrap",
            f"--variant={inputs['variant']}",
            f"--include={','.join(INCLUDE)}",
            f"--arch={inputs['arch']}",
            "--components=main",
        ]
        if KEYRING.is_file():
            command.append(f"--keyring={KEYRING}")
        command += [SUITE, str(target), str(inputs["mirror"])]
        with step(progress, f"debootstrap {SUITE} ({VARIANT} + python3)", total=len(PHASES)) as current:
            try:
                _run_debootstrap(command, log_path, current)
            finally:
                _unmount_under(target)  # a failed debootstrap can leave proc/sys mounted in the target
            current.finish("done")
        with step(progress, "rootfs: packing tarball") as current:
            _trim(target)
            partial = tarball.with_suffix(".partial")
            result = subprocess.run(
                ["tar", "--numeric-owner", "--xattrs", "-C", str(target), "-cf", str(partial),
                 "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "."],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise SetupError(f"tar of the base rootfs failed: {result.stderr.strip()[-300:]}")
            partial.replace(tarball)  # atomic: a cached tarball is always complete
            current.finish(f"{tarball.stat().st_size / 2**20:.0f} MiB in {tarball}")


def _run_debootstrap(command: list[str], log_path: Path, current: Step) -> None:
    seen: set[str] = set()
    packages = 0
    with open(log_path, "w") as log:
        log.write(f"--- raftchaos: {' '.join(command)}\n")
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            text = line.removeprefix("I: ").strip()
            phase = next((p for p in PHASES if text.startswith(p)), None)
            if phase is not None and phase not in seen:
                seen.add(phase)
                current.advance(1)
            if phase in ("Retrieving", "Unpacking", "Configuring"):
                packages += 1
            current.note(f"{text} [{packages} steps]")
        if proc.wait() != 0:
            raise SetupError(
                f"debootstrap failed (exit {proc.returncode}); see {log_path}: {tail(log_path, 3)}"
            )


def _trim(target: Path) -> None:
    """Drop what a container never needs: downloaded .debs, apt lists, docs (saves ~40% of the size)."""
    for pattern in (
        "var/cache/apt/archives/*.deb",
        "var/lib/apt/lists/*_*",
        "usr/share/doc/*",
        "usr/share/man/*",
    ):
        for path in target.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _unmount_under(target: Path) -> None:
    """Lazily unmount every mount point at or below ``target`` (deepest first) so cleanup cannot recurse into them."""
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return
    prefix = str(target.resolve())
    for point in sorted((m for m in mounts if m == prefix or m.startswith(prefix + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
