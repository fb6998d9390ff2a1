"""Model artifact store: immutable files under `<tenant>/<version>/<name>`.

Blob Storage in Azure, a local folder embedded. Artifacts are written once by training and
read once per process by serving, so the interface is whole-file get/put.
"""

from __future__ import annotations

import contextlib
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from shared.stores.errors import BackendError


class ArtifactNotFound(KeyError):
    """The named artifact file does not exist."""


class ArtifactStore(Protocol):
    name: str

    def put(self, path: str, data: bytes) -> None: ...
    def get(self, path: str) -> bytes: ...
    def list(self, prefix: str) -> list[str]: ...
    def ping(self) -> bool: ...


def _safe(path: str) -> str:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"invalid artifact path '{path}'")
    return str(p)


class LocalArtifactStore:
    name = "folder"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def put(self, path: str, data: bytes) -> None:
        target = self.root / _safe(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)  # readers never see a half-written file

    def get(self, path: str) -> bytes:
        target = self.root / _safe(path)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(path) from None

    def list(self, prefix: str) -> list[str]:
        base = self.root / _safe(prefix) if prefix else self.root
        if not base.exists():
            return []
        return sorted(
            str(p.relative_to(self.root).as_posix())
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp")
        )

    def ping(self) -> bool:
        return True


class BlobArtifactStore:
    """One container; each artifact file is a block blob."""

    name = "blob"

    def __init__(self, container_client: Any) -> None:
        self._container = container_client

    def ensure_container(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            self._container.create_container()

    def put(self, path: str, data: bytes) -> None:
        name = _safe(path)
        try:
            self._container.upload_blob(name, data, overwrite=True)
        except Exception as exc:
            raise BackendError(f"blob upload failed: {exc}") from exc

    def get(self, path: str) -> bytes:
        from azure.core.exceptions import ResourceNotFoundError

        name = _safe(path)
        try:
            data: bytes = self._container.download_blob(name).readall()
            return data
        except ResourceNotFoundError:
            raise ArtifactNotFound(path) from None
        except Exception as exc:
            raise BackendError(f"blob download failed: {exc}") from exc

    def list(self, prefix: str) -> list[str]:
        start = _safe(prefix) + "/" if prefix else None  # a folder, as on disk
        try:
            names = self._container.list_blob_names(name_starts_with=start)
            return sorted(str(n) for n in names)
        except Exception as exc:
            raise BackendError(f"blob list failed: {exc}") from exc

    def ping(self) -> bool:
        try:
            self._container.get_container_properties()
            return True
        except Exception:
            return False
