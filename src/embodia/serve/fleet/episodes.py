"""Episode uploads: an archive (.tar.gz) of a LeRobot-v3 dataset that a robot recorded.

Why whole datasets as archives: a robot records with the project's writer (or LeRobot's), so
what it sends is already a dataset `embodia data validate` can check and `embodia train` can
read. The archive is unpacked in the service's own staging folder, refused whole if any member
is not a plain file or folder inside it, checked, and only then moved into place under its
content hash, so a crash leaves nothing half stored and a re-send is recognised by its hash.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from embodia.data.metadata import DatasetMeta
from embodia.data.validate import validate_dataset


class UploadError(ValueError):
    """The upload is not a valid dataset archive; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)  # both in args: it crosses a process pool intact
        self.field, self.message = field, message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class EpisodeSummary:
    embodiment: str
    episodes: int
    frames: int
    successes: int
    fps: float


def pack(root: Path, name: str | None = None) -> bytes:
    """A dataset folder as the .tar.gz bytes an upload sends (what a robot's agent posts)."""
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root, arcname=name or root.name)
    return buf.getvalue()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack(archive: Path, into: Path, max_bytes: int) -> Path:
    """Unpack `archive` into the empty folder `into`; returns the dataset root inside it."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            total = 0
            for m in members:
                if not (m.isfile() or m.isdir()):
                    raise UploadError("body", f"archive member {m.name!r} is not a plain file or folder")
                if m.name.startswith("/") or ".." in Path(m.name).parts:
                    raise UploadError("body", f"archive member {m.name!r} points outside the archive")
                total += m.size
                if total > max_bytes:
                    raise UploadError("body", f"archive unpacks to more than {max_bytes} bytes")
            tar.extractall(into, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise UploadError("body", f"not a readable .tar.gz archive: {e}") from None
    infos = sorted(into.glob("**/meta/info.json"), key=lambda p: len(p.parts))
    if not infos:
        raise UploadError("body", "the archive holds no LeRobot dataset (no meta/info.json)")
    return infos[0].parent.parent


def check(root: Path) -> EpisodeSummary:
    """Validate the dataset at `root` and count what it holds."""
    report = validate_dataset(root)
    if not report.ok:
        raise UploadError("body", "the dataset is not valid LeRobot v3: " + "; ".join(report.problems[:5]))
    meta = DatasetMeta.load(root)
    if meta.num_episodes == 0:
        raise UploadError("body", "the dataset holds no episodes")
    success = meta.column("success", None)
    return EpisodeSummary(meta.embodiment, meta.num_episodes, int(sum(meta.column("length", 0))),
                          sum(1 for s in success if s), float(meta.fps))


def store(root: Path, dest: Path) -> Path:
    """Move a checked dataset to `dest` (same filesystem: one rename, never half there)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # the same content from an earlier, unrecorded attempt
        shutil.rmtree(root)
        return dest
    root.rename(dest)
    return dest


def prepare(archive: Path, work: Path, datasets_dir: Path, name: str, sha: str, embodiment: str,
            max_bytes: int) -> tuple[EpisodeSummary, Path]:
    """Unpack, check and store one upload (the CPU-heavy part, run in a worker process so the
    service's event loop keeps answering heartbeats)."""
    root = unpack(archive, work / "unpacked", max_bytes)
    summary = check(root)
    if summary.embodiment and summary.embodiment != embodiment:
        raise UploadError("embodiment", f"the episodes are {summary.embodiment!r}; this robot is {embodiment!r}")
    return summary, store(root, datasets_dir / name / sha)


def warm() -> int:
    """A no-op a worker process runs first, so that this module (pyarrow, the validator) is
    imported before the first real upload waits for it."""
    return 0
