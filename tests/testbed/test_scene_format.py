"""``scene.json`` as the bench reads it: what it keeps of a well-formed document."""

from __future__ import annotations

from testbed.scene_format import parse_scene_info


def test_a_tag_given_twice_counts_once_and_unknown_keys_are_ignored() -> None:
    """A scene listed 200 000 times under one tag made ``by_tag`` say 200 000 scenes."""
    info = parse_scene_info(
        '{"expect": "capture", "identity": "x", "tags": ["low_light", "approach",'
        ' "low_light"], "lux": 3, "photo": "x_0001.jpg"}'
    )
    assert info.tags == ("low_light", "approach")
    assert (info.expect, info.identity, info.photo) == ("capture", "x", "x_0001.jpg")
