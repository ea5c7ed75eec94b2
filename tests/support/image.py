"""The container image, built here with podman: what `docker build` makes of the
Dockerfile, and a way to run a command in it as the image's user and environment.

This machine reaches Debian's mirror and PyPI but no container registry, so the
Dockerfile's base, `python:3.11-slim-bookworm`, is made locally the way its official
recipe makes it: a minimal Debian bookworm (debootstrap) with CPython 3.11 under
`/usr/local` (the interpreter running these tests, which is built that way) and pip.
It is stored under the base's own name, so the Dockerfile builds unchanged. Podman
builds with `--isolation chroot`: no container runtime can start here (setting a
process's limits is refused), while a chroot can.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

__all__ = ["BASE", "build_image", "podman", "run_in_image"]

BASE = "docker.io/library/python:3.11-slim-bookworm"
MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# What the official slim image installs beside Debian's minimal base, and the libraries
# the interpreter's extension modules load.
PACKAGES = (
    "ca-certificates,netbase,tzdata,libffi8,libssl3,libsqlite3-0,libncursesw6,libuuid1,"
    "libbz2-1.0,liblzma5,zlib1g,libreadline8,libgdbm6,libnsl2,libexpat1"
)
# Not in the slim image either: the test suite, IDLE, Tk.
SKIPPED = {"test", "idlelib", "tkinter", "turtledemo", "site-packages", "__pycache__"}


def podman(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "--storage-driver", "vfs", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _checked(process: subprocess.CompletedProcess[str], what: str) -> str:
    assert process.returncode == 0, (
        f"{what} failed:\n{process.stdout[-4000:]}\n{process.stderr[-4000:]}"
    )
    return process.stdout


def ensure_base() -> None:
    """The Dockerfile's base image, made here unless podman already has it."""
    if podman("image", "exists", BASE).returncode == 0:
        return
    with tempfile.TemporaryDirectory(prefix="base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        debootstrap = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
             str(rootfs), MIRROR],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        _checked(debootstrap, "debootstrap")
        _install_python(rootfs)
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        imported = podman(
            "import",
            "--change", "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change", "ENV LANG=C.UTF-8",
            "--change", 'CMD ["python3"]',
            str(archive), BASE,
        )  # fmt: skip
        _checked(imported, "podman import")


def _install_python(rootfs: Path) -> None:
    """CPython 3.11 into /usr/local, as the official image has it, then pip."""
    prefix = Path(sys.base_prefix)
    local = rootfs / "usr" / "local"
    version = sysconfig.get_python_version()
    (local / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(prefix / "bin" / f"python{version}", local / "bin" / f"python{version}")
    for library in (prefix / "lib").glob("libpython*.so*"):
        shutil.copy2(library, local / "lib" / library.name, follow_symlinks=False)
    shutil.copytree(
        prefix / "lib" / f"python{version}",
        local / "lib" / f"python{version}",
        ignore=lambda folder, names: [name for name in names if name in SKIPPED],
        symlinks=True,
    )
    (local / "lib" / f"python{version}" / "site-packages").mkdir()
    for name in ("python3", "python"):
        (local / "bin" / name).symlink_to(f"python{version}")
    chroot = ["chroot", str(rootfs)]
    for command in (["ldconfig"], [f"/usr/local/bin/python{version}", "-m", "ensurepip"]):
        done = subprocess.run(
            [*chroot, *command], capture_output=True, text=True, timeout=300, check=False
        )
        _checked(done, " ".join(command))
    (local / "bin" / "pip").symlink_to("pip3")


def build_image(context: Path, tag: str) -> None:
    """`docker build -t tag context`, with podman, from the local base.

    The build reaches PyPI through this machine's TLS-inspecting egress, whose CA is in
    the host's bundle and not in the image's: the build steps see the host's bundle and
    a pip configuration naming it, mounted for the build only (not in any layer), as a
    build behind such a proxy would have them."""
    ensure_base()
    with tempfile.TemporaryDirectory(prefix="build-") as tmp:
        pip_conf = Path(tmp) / "pip.conf"
        pip_conf.write_text(f"[global]\ncert = {HOST_CA_BUNDLE}\n", encoding="utf-8")
        built = podman(
            "build", "--isolation", "chroot", "--pull=never", "--format", "docker",
            "--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
            "--volume", f"{pip_conf}:/etc/pip.conf:ro",
            "-t", tag, str(context),
            timeout=1800,
        )  # fmt: skip
    _checked(built, "podman build")


def run_in_image(image: str, script: str, timeout: float = 300) -> str:
    """Run a shell script in `image` as its user, in its working directory and
    environment (a build step on top of it, chroot-isolated); its output."""
    with tempfile.TemporaryDirectory(prefix="in-image-") as tmp:
        (Path(tmp) / "Containerfile").write_text(
            f'FROM {image}\nRUN ["/bin/sh", "-c", {json.dumps(script)}]\n', encoding="utf-8"
        )
        ran = podman(
            "build", "--isolation", "chroot", "--pull=never", "--no-cache", "--layers=false",
            "--format", "docker", tmp,
            timeout=timeout,
        )  # fmt: skip
        return _checked(ran, "a command in the image")
