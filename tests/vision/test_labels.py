"""Label files in both forms, as tables of text -> expected id/name map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_app.errors import ModelError
from edge_app.vision.labels import LabelMap, load_labels, parse_labels

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # id form, the separators people use
        ("0 person\n1 bicycle\n", {0: "person", 1: "bicycle"}),
        ("0  person\n2  car\n", {0: "person", 2: "car"}),
        ("0: person\n2:car\n", {0: "person", 2: "car"}),
        ("0\tperson\n7\ttraffic light\n", {0: "person", 7: "traffic light"}),
        ("  3   motorcycle  \n\n5 bus\n\n", {3: "motorcycle", 5: "bus"}),
        ("0 person\n1 ???\n2 car\n", {0: "person", 2: "car"}),
        ("\ufeff0 person\n", {0: "person"}),
        # line form with the background entry: class c is line c + 1
        ("???\nperson\nbicycle\n", {0: "person", 1: "bicycle"}),
        ("???\nperson\n???\ncar\n", {0: "person", 2: "car"}),
        # line form without it: class c is line c
        ("person\nbicycle\ncar", {0: "person", 1: "bicycle", 2: "car"}),
        ("cat\n\ndog\n\n\n", {0: "cat", 2: "dog"}),
        ("background\nperson\n", {0: "background", 1: "person"}),
        # a name that starts with a digit does not make the file id-form unless every line is
        ("3 wheeler\ncar\n", {0: "3 wheeler", 1: "car"}),
        ("1\n2\n3\n", {0: "1", 1: "2", 2: "3"}),
        ("person\r\ncar\r\n", {0: "person", 1: "car"}),
    ],
)
def test_parse_labels(text: str, expected: dict[int, str]) -> None:
    assert dict(parse_labels(text).names) == expected


@pytest.mark.parametrize(
    ("class_id", "name"),
    [(0, "person"), (2, "car"), (1, "class_1"), (99, "class_99"), (-1, "class_-1")],
)
def test_unknown_ids_get_a_generated_name(class_id: int, name: str) -> None:
    labels = parse_labels("0 person\n2 car\n")
    assert labels.name(class_id) == name
    assert labels.lookup(np.array([class_id], np.int32)) == (name,)


def test_lookup_keeps_order_and_length() -> None:
    labels = parse_labels("???\nperson\nbicycle\ncar\n")
    ids = np.array([2, 0, 0, 7, 1], np.int32)
    assert labels.lookup(ids) == ("car", "person", "person", "class_7", "bicycle")
    assert labels.lookup(np.zeros(0, np.int32)) == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has no labels"),
        ("\n  \n", "has no labels"),
        ("0 person\n0 car\n", "id 0 is given twice"),
    ],
)
def test_bad_label_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        parse_labels(text, "x.txt")


def test_label_map_is_immutable_and_empty_map_names_everything() -> None:
    labels = parse_labels("0 person\n")
    with pytest.raises(TypeError):
        labels.names[1] = "car"  # type: ignore[index]
    assert LabelMap.empty().name(5) == "class_5"
    assert len(LabelMap.empty()) == 0
    assert parse_labels("???\nperson\nperson\n").ids("person") == (0, 1)


def test_shipped_label_files_agree_with_each_other() -> None:
    sparse = load_labels(REPO / "models" / "labels" / "coco_labels.txt")
    dense = load_labels(REPO / "models" / "labels" / "coco_labels_v1.txt")
    assert dict(sparse.names) == dict(dense.names)
    assert len(sparse) == 80
    assert (sparse.name(0), sparse.name(2), sparse.name(31), sparse.name(89)) == (
        "person",
        "car",
        "tie",
        "toothbrush",
    )
    assert sparse.name(11) == "class_11"  # an id COCO left unused


def test_missing_label_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"cannot read label file .*nope\.txt"):
        load_labels(tmp_path / "nope.txt")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ModelError, match="not UTF-8"):
        load_labels(binary)
