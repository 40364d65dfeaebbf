"""The model manifest, model resolution and ``pull`` against a real local HTTP server (the
simulator's ``FileServer``)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_app.errors import ChecksumMismatchError, ModelError, ModelNotFoundError
from edge_app.models import (
    ModelSpec,
    default_manifest_path,
    default_model_dir,
    load_manifest,
    pull,
    resolve_model,
    sha256_file,
)
from simulator.files import FileServer

REPO = Path(__file__).resolve().parents[2]
V2_SHA = "7046f31a72ec0045a57b94199144c96cf5840c7dc106b808b64a1ed5559aa0cd"


# --- manifest --------------------------------------------------------------------------------


def test_repository_manifest_loads_with_both_models() -> None:
    catalog = load_manifest()
    assert catalog.path == (REPO / "models" / "manifest.yaml").resolve()
    assert catalog.default == "ssd_mobilenet_v2_coco"
    v2 = catalog.get("ssd_mobilenet_v2_coco")
    assert (v2.file, v2.sha256, v2.bytes) == (
        "mobilenet_ssd_v2_coco_quant_postprocess.tflite",
        V2_SHA,
        6_175_408,
    )
    assert (v2.format, v2.input, v2.license) == ("ssd_postprocess", (300, 300), "Apache-2.0")
    assert [type(s).__name__ for s in v2.sources] == ["UrlSource", "NpmSource"]
    v1 = catalog.get("ssd_mobilenet_v1_coco")
    assert v1.sha256.startswith("df027205054d6fd9")
    assert v1.bytes == 4_185_003
    for spec in catalog.models:
        assert catalog.labels_path(spec).is_file(), spec.labels


def test_default_manifest_is_the_repositorys_in_a_checkout() -> None:
    assert default_manifest_path() == REPO / "models" / "manifest.yaml"


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        load_manifest().get("yolov8n")
    assert "yolov8n" in str(info.value)
    assert "ssd_mobilenet_v2_coco" in str(info.value)
    assert "ssd_mobilenet_v1_coco" in str(info.value)


def _spec_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "m",
        "file": "m.tflite",
        "sha256": "0" * 64,
        "bytes": 10,
        "format": "ssd_postprocess",
        "labels": "coco_labels.txt",
        "input": [300, 300],
        "license": "Apache-2.0",
        "sources": [{"url": "https://example.com/m.tflite"}],
    }
    doc.update(overrides)
    return doc


def _write_manifest(tmp_path: Path, models: list[dict[str, Any]], default: str = "m") -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"schema": 1, "default": default, "models": models}))
    return path


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"sha256": "XYZ"}, "models.0.sha256"),
        ({"file": "../../etc/passwd"}, "models.0.file"),
        ({"file": "model.onnx"}, "models.0.file"),
        ({"bytes": 0}, "models.0.bytes"),
        ({"sources": []}, "models.0.sources"),
        ({"sources": [{"url": "ftp://x/y"}]}, "models.0.sources.0"),
        ({"sources": [{"npm": "pkg@latest", "archive": "package/x"}]}, "models.0.sources.0"),
        ({"sources": [{"npm": "pkg@1.0.0", "archive": "../x"}]}, "models.0.sources.0"),
        ({"colour": "red"}, "models.0.colour"),
    ],
)
def test_invalid_manifest_names_the_field(
    tmp_path: Path, overrides: dict[str, Any], field: str
) -> None:
    path = _write_manifest(tmp_path, [_spec_doc(**overrides)])
    with pytest.raises(ModelError) as info:
        load_manifest(path)
    assert str(path) in str(info.value)
    assert field in str(info.value)


def test_manifest_default_and_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="default 'other' is not one of the models"):
        load_manifest(_write_manifest(tmp_path, [_spec_doc()], default="other"))
    with pytest.raises(ModelError, match="unique"):
        load_manifest(_write_manifest(tmp_path, [_spec_doc(), _spec_doc()]))
    with pytest.raises(ModelError, match="cannot read model manifest"):
        load_manifest(tmp_path / "absent.yaml")


# --- resolution ------------------------------------------------------------------------------


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = b"edge" * 100_000
    path.write_bytes(data)
    assert sha256_file(path, chunk_bytes=4096) == hashlib.sha256(data).hexdigest()


def test_default_model_dir_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EDGE_APP_MODEL_DIR", str(tmp_path))
    assert default_model_dir() == tmp_path
    monkeypatch.delenv("EDGE_APP_MODEL_DIR")
    assert default_model_dir() == Path.home() / ".cache" / "edge-app" / "models"


def test_a_name_not_pulled_yet_says_how_to_pull_it(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_model("ssd_mobilenet_v2_coco", tmp_path)
    assert "run: edge-app models pull ssd_mobilenet_v2_coco" in str(info.value)


def test_a_tampered_cached_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mobilenet_ssd_v2_coco_quant_postprocess.tflite").write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatchError, match="edge-app models pull ssd_mobilenet_v2_coco"):
        resolve_model("ssd_mobilenet_v2_coco", tmp_path)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("nosuchmodel", "neither a known model"),
        ("missing/model.tflite", "does not exist"),
        ("missing.tflite", "does not exist"),
    ],
)
def test_missing_paths_and_names_are_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match=message):
        resolve_model(given, tmp_path)


def test_a_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not a file"):
        resolve_model(str(tmp_path), tmp_path)


def test_an_unknown_file_resolves_without_labels(tmp_path: Path) -> None:
    path = tmp_path / "custom.tflite"
    path.write_bytes(b"x")
    resolved = resolve_model(str(path), tmp_path)
    assert (resolved.path, resolved.spec, resolved.labels) == (path, None, None)
    assert resolved.name == "custom"
    assert resolved.sha256 == hashlib.sha256(b"x").hexdigest()


# --- pull against a real HTTP server ---------------------------------------------------------


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    """The simulator's real HTTP file server on a folder of its own (not in ``tmp_path``,
    where the pulls land and nothing else may be)."""
    with FileServer(tmp_path_factory.mktemp("www")) as srv:
        yield srv


def put(server: FileServer, name: str, body: bytes) -> None:
    (server.folder / name).write_bytes(body)


def requested(server: FileServer) -> list[str]:
    return [name for name, _ in server.requests]


MODEL = b"not really a model, but bytes with a known digest " * 1000


def _spec(sources: list[dict[str, Any]], data: bytes = MODEL) -> ModelSpec:
    return ModelSpec.model_validate(
        _spec_doc(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), sources=sources)
    )


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "m.tflite")


@pytest.mark.slow
def test_pull_downloads_verifies_and_reports_progress(server: FileServer, tmp_path: Path) -> None:
    put(server, "m.tflite", MODEL)
    seen: list[tuple[int, int | None]] = []
    path = pull(
        _spec([{"url": server.url("m.tflite")}]),
        tmp_path / "cache",
        progress=lambda done, total: seen.append((done, total)),
    )
    assert path == tmp_path / "cache" / "m.tflite"
    assert path.read_bytes() == MODEL
    assert seen[-1] == (len(MODEL), len(MODEL))
    assert _leftovers(path.parent) == []


@pytest.mark.slow
def test_pull_is_idempotent_and_needs_no_network_when_cached(
    server: FileServer, tmp_path: Path
) -> None:
    put(server, "m.tflite", MODEL)
    spec = _spec([{"url": server.url("m.tflite")}])
    first = pull(spec, tmp_path)
    stamp = first.stat().st_mtime_ns, first.stat().st_ino
    server.close()  # from here on, any network access would fail
    second = pull(spec, tmp_path)
    assert second == first
    assert (second.stat().st_mtime_ns, second.stat().st_ino) == stamp
    assert requested(server) == ["m.tflite"]


@pytest.mark.slow
def test_pull_moves_on_after_a_failing_or_wrong_source(server: FileServer, tmp_path: Path) -> None:
    put(server, "wrong.tflite", b"a different file")
    put(server, "right.tflite", MODEL)
    spec = _spec(
        [
            {"url": server.url("missing.tflite")},
            {"url": server.url("wrong.tflite")},
            {"url": server.url("right.tflite")},
        ]
    )
    path = pull(spec, tmp_path)
    assert path.read_bytes() == MODEL
    assert requested(server) == ["missing.tflite", "wrong.tflite", "right.tflite"]
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_pull_reads_a_zip_member(server: FileServer, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("labelmap.txt", "???\nperson\n")
        zf.writestr("detect.tflite", MODEL)
    put(server, "bundle.zip", buffer.getvalue())
    path = pull(_spec([{"url": server.url("bundle.zip"), "member": "detect.tflite"}]), tmp_path)
    assert path.read_bytes() == MODEL


@pytest.mark.slow
def test_pull_replaces_a_corrupt_cached_file(server: FileServer, tmp_path: Path) -> None:
    put(server, "m.tflite", MODEL)
    (tmp_path / "m.tflite").write_bytes(MODEL[:-1] + b"!")
    path = pull(_spec([{"url": server.url("m.tflite")}]), tmp_path)
    assert path.read_bytes() == MODEL
    assert requested(server) == ["m.tflite"]


@pytest.mark.slow
def test_when_every_source_fails_the_error_lists_each_and_nothing_is_left(
    server: FileServer, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("other.tflite", MODEL)
    put(server, "bundle.zip", buffer.getvalue())
    put(server, "short.tflite", MODEL[:100])
    put(server, "long.tflite", MODEL + b"trailing garbage")
    put(server, "notzip.zip", b"plain bytes")
    spec = _spec(
        [
            {"url": server.url("missing.tflite")},
            {"url": server.url("short.tflite")},
            {"url": server.url("long.tflite")},
            {"url": server.url("bundle.zip"), "member": "detect.tflite"},
            {"url": server.url("notzip.zip"), "member": "detect.tflite"},
            {"url": "http://127.0.0.1:9/closed-port.tflite"},
        ]
    )
    with pytest.raises(ModelError) as info:
        pull(spec, tmp_path, timeout=5)
    message = str(info.value)
    for line in [
        "/missing.tflite: HTTP 404",
        "/short.tflite: got 100 bytes",
        "/long.tflite: more than",
        "/bundle.zip (zip member detect.tflite): the zip has no member detect.tflite",
        "/notzip.zip (zip member detect.tflite): not a valid zip archive",
        "closed-port.tflite: cannot connect",
        f"place it at {tmp_path / 'm.tflite'}",
    ]:
        assert line in message
    assert list(tmp_path.iterdir()) == []


def test_pull_into_an_unwritable_place_says_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(ModelError, match="--model-dir"):
        pull(_spec([{"url": "http://127.0.0.1:9/x"}]), blocker / "cache")
