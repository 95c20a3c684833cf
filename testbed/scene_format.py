"""The scene folder format that ``gatectl bench capture`` reads and ``gatectl scenes make``
writes.

``DIR/<scene>/video.avi`` (or ``video.mp4``; anything OpenCV reads; 30 fps, usually
1280x720) and ``DIR/<scene>/scene.json``::

    {"expect": "capture" | "no_capture", "identity": "<name>" | null, "tags": ["..."]}

Unknown keys are ignored. One optional key is understood: ``"photo"``, the file name of
the photo the traveller was made from, which the bench then keeps out of the gallery (a
capture is never verified against the very photo it was made from). The generator also
writes ``truth.json`` (per-frame face boxes of each person; positions only), which the
bench uses, when present, to say whose face was captured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gate_contract.documents import parse_json

SCENE_FILE = "scene.json"
TRUTH_FILE = "truth.json"
VIDEO_FILE = "video.avi"
VIDEO_NAMES = ("video.avi", "video.mp4", "video.mkv", "video.mov")
EXPECTATIONS = ("capture", "no_capture")


class SceneFormatError(ValueError):
    """A scene folder that does not follow the format; the message says what is wrong."""


@dataclass(frozen=True)
class SceneInfo:
    expect: str
    identity: str | None
    tags: tuple[str, ...]
    photo: str | None = None

    def to_json(self) -> dict:
        document: dict = {"expect": self.expect, "identity": self.identity, "tags": list(self.tags)}
        if self.photo:
            document["photo"] = self.photo
        return document


def parse_scene_info(text: str) -> SceneInfo:
    """``scene.json``'s text, checked; raises :class:`SceneFormatError`."""
    try:
        document = parse_json(text)
    except ValueError as exc:
        raise SceneFormatError(f"{SCENE_FILE} is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise SceneFormatError(f"{SCENE_FILE} must hold a JSON object")
    expect = document.get("expect")
    if expect not in EXPECTATIONS:
        raise SceneFormatError(f'"expect" must be "capture" or "no_capture", not {expect!r}')
    identity = document.get("identity")
    if identity is not None and (not isinstance(identity, str) or not identity.strip()):
        raise SceneFormatError('"identity" must be a non-empty string or null')
    tags = document.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise SceneFormatError('"tags" must be a list of non-empty strings')
    photo = document.get("photo")
    if photo is not None and (not isinstance(photo, str) or "/" in photo or "\\" in photo):
        raise SceneFormatError('"photo" must be a file name')
    return SceneInfo(expect, identity, tuple(dict.fromkeys(tags)), photo)  # a tag counts once


def read_scene_info(folder: Path) -> SceneInfo:
    path = folder / SCENE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SceneFormatError(f"no {SCENE_FILE}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneFormatError(f"cannot read {SCENE_FILE}: {exc}") from exc
    return parse_scene_info(text)


def video_of(folder: Path) -> Path:
    for name in VIDEO_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise SceneFormatError(f"no video ({' or '.join(VIDEO_NAMES)})")


def read_truth(folder: Path) -> dict | None:
    """``truth.json`` if there is a readable one (it is optional)."""
    try:
        truth = parse_json((folder / TRUTH_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return truth if isinstance(truth, dict) and isinstance(truth.get("faces"), dict) else None


def scene_folders(directory: Path) -> list[Path]:
    """Every sub-folder of ``directory`` (sorted): each is a scene, well-formed or not."""
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


__all__ = [
    "EXPECTATIONS",
    "SCENE_FILE",
    "TRUTH_FILE",
    "VIDEO_FILE",
    "VIDEO_NAMES",
    "SceneFormatError",
    "SceneInfo",
    "parse_scene_info",
    "read_scene_info",
    "read_truth",
    "scene_folders",
    "video_of",
]
