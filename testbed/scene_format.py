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

Optional exposure tracks: ``video_ev+1.avi`` (any ``video_ev<signed stops>`` beside the
video, in quarter stops within ±4, same frame size and length) is the same scene filmed
with the camera's exposure compensation at that many stops. When a scene has them, the
bench's camera can be asked for them (``appliance.vision.exposure``) and switches to the
nearest track; without them the request does nothing, as with a camera that has no
exposure control.
"""

from __future__ import annotations

import re
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


_TRACK = re.compile(r"video_ev([+-]\d(?:\.\d{1,2})?)\.(?:avi|mp4|mkv|mov)")
MAX_TRACK_EV = 4.0
TRACK_STEP_EV = 0.25  # tracks are in quarter stops, so every name reads back


def track_name(ev: float) -> str:
    """The file name of the exposure track at ``ev`` stops (``video_ev+1.avi``)."""
    return f"video_ev{ev:+g}.avi"


def exposure_tracks(folder: Path) -> dict[float, Path]:
    """The scene's videos by exposure compensation in stops: 0 is ``video_of(folder)``;
    raises :class:`SceneFormatError` when there is no video."""
    tracks = {0.0: video_of(folder)}
    for path in sorted(folder.iterdir()):
        match = _TRACK.fullmatch(path.name)
        if match and path.is_file() and abs(float(match[1])) <= MAX_TRACK_EV:
            tracks.setdefault(float(match[1]), path)
    return dict(sorted(tracks.items()))


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
    "MAX_TRACK_EV",
    "SCENE_FILE",
    "TRACK_STEP_EV",
    "TRUTH_FILE",
    "VIDEO_FILE",
    "VIDEO_NAMES",
    "SceneFormatError",
    "SceneInfo",
    "exposure_tracks",
    "parse_scene_info",
    "read_scene_info",
    "read_truth",
    "scene_folders",
    "track_name",
    "video_of",
]
