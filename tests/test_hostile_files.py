"""Hostile and unusual inputs outside model files (issue 16): dataset class files, output paths,
leftover temporaries, options that do not apply, text reports, and small API edges."""

from __future__ import annotations

import pytest

from edgeseg.data.errors import DatasetLayoutError
from edgeseg.data.folder import read_class_file

# --- classes.yaml of a folder dataset ------------------------------------------------------------
BAD_CLASS_FILES = {
    "yaml syntax": ("classes.yaml", "classes: [road, car\npalette: {"),
    "tab indentation": ("classes.yaml", "classes:\n\t- road\n"),
    "not utf-8": ("classes.yaml", b"classes: [\xff\xfe]\n"),
    "a string": ("classes.yaml", "classes: abcd\n"),
    "a scalar": ("classes.yaml", "42\n"),
    "empty": ("classes.yaml", ""),
    "nested names": ("classes.yaml", "classes: [[a, b], c]\n"),
    "yes/no names": ("classes.yaml", "classes: [yes, no]\n"),
    "repeated names": ("classes.yaml", "classes: [road, road]\n"),
    "palette out of range": ("classes.yaml", "classes: [a]\npalette: [[0, 0, 300]]\n"),
    "palette not triples": ("classes.yaml", "classes: [a]\npalette: [abc]\n"),
    "json syntax": ("classes.json", '{"classes": ["a",]}'),
    "json list of numbers in palette": ("classes.json", '{"classes": ["a"], "palette": [1, 2, 3]}'),
}


@pytest.mark.parametrize("case", sorted(BAD_CLASS_FILES))
def test_malformed_class_file_is_a_layout_error_with_the_format(tmp_path, case):
    name, content = BAD_CLASS_FILES[case]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DatasetLayoutError, match=str(path)) as info:
        read_class_file(tmp_path)
    assert "classes" in str(info.value)


def test_plain_list_class_file_is_accepted_with_default_colours(tmp_path):
    (tmp_path / "classes.yaml").write_text("- road\n- car\n- person\n")
    classes, palette = read_class_file(tmp_path)
    assert classes == ("road", "car", "person") and len(palette) == 3 and len(set(palette)) == 3
