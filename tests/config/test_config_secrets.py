"""Config refuses what would put a secret into output: PEM text where a file path belongs, and
URLs that the output redaction could not find in one piece."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel, ValidationError

from edge_app.config import AppConfig, DetectorConfig, load_config, parse_config
from edge_app.errors import ConfigError

KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "-----END PRIVATE KEY-----\n"
)
BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"


def _types(annotation: Any) -> Iterator[Any]:
    """``annotation`` and every type inside it (unions, lists, tuples, Annotated)."""
    yield annotation
    for arg in get_args(annotation):
        yield from _types(arg)


def _models(root: type[BaseModel]) -> Iterator[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    todo = [root]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        yield model
        for info in model.model_fields.values():
            todo.extend(
                t
                for t in _types(info.annotation)
                if isinstance(t, type) and issubclass(t, BaseModel)
            )


def path_fields() -> list[tuple[type[BaseModel], str]]:
    """Every field of the config tree that holds a ``Path``, wherever it is: a field added
    later by anyone is found too."""
    found = []
    for model in _models(AppConfig):
        for name, info in model.model_fields.items():
            if any(t is Path for t in _types(info.annotation)):
                found.append((model, name))
    return found


def test_the_walk_finds_the_known_path_fields() -> None:
    names = {f"{model.__name__}.{name}" for model, name in path_fields()}
    assert {
        "TlsConfig.key",
        "TlsConfig.cert",
        "TlsConfig.ca",
        "DeviceConfig.data_dir",
        "FileSourceConfig.path",
        "OutboxConfig.path",
        "DetectorConfig.labels",
        "EncryptionConfig.key_file",
    } <= names


@pytest.mark.parametrize(
    ("model", "field"), path_fields(), ids=lambda v: v.__name__ if isinstance(v, type) else v
)
def test_every_path_field_refuses_pem_text(model: type[BaseModel], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({field: KEY})
    errors = [e for e in info.value.errors() if e["loc"] == (field,)]
    assert len(errors) == 1, info.value.errors()
    assert "PEM text" in errors[0]["msg"]
    assert "give that file's path" in errors[0]["msg"]
    assert BODY not in errors[0]["msg"]


def test_a_model_given_as_pem_text_is_refused() -> None:
    with pytest.raises(ValidationError, match="not a file path"):
        DetectorConfig(model=KEY)


def test_a_key_pasted_into_the_config_file_is_refused_by_field(tmp_path: Path) -> None:
    indented = "".join(f"      {line}\n" for line in KEY.splitlines())
    (tmp_path / "edge.yaml").write_text(
        "device: {thing_name: x}\n"
        "cameras: [{name: a, source: {type: file, path: a.mp4}}]\n"
        "uplink:\n  tls:\n    ca: ca.pem\n    cert: cert.pem\n    key: |\n" + indented
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "edge.yaml")
    assert [e.path for e in info.value.errors] == ["uplink.tls.key"]
    assert "save the text in a file" in str(info.value)
    assert BODY not in str(info.value)


AT_REST_KEY = base64.b64encode(bytes(range(100, 132))).decode()  # 44 characters, one has a /


@pytest.mark.parametrize("padding", ["", "  "], ids=["bare", "padded"])
def test_the_at_rest_key_itself_in_key_file_is_refused_without_showing_it(
    tmp_path: Path, padding: str
) -> None:
    (tmp_path / "edge.yaml").write_text(
        "device: {thing_name: x}\n"
        "cameras: [{name: a, source: {type: file, path: a.mp4}}]\n"
        "uplink: {enabled: false}\n"
        f"encryption: {{enabled: true, key_file: '{padding}{AT_REST_KEY}{padding}'}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "edge.yaml")
    assert [e.path for e in info.value.errors] == ["encryption.key_file"]
    assert "holds a key itself, not the path of a key file" in str(info.value)
    assert AT_REST_KEY not in str(info.value)
    assert AT_REST_KEY.strip("=") not in str(info.value)


def test_a_key_file_path_is_still_a_path(tmp_path: Path) -> None:
    doc = {
        "device": {"thing_name": "x"},
        "cameras": [{"name": "a", "source": {"type": "file", "path": "a.mp4"}}],
        "uplink": {"enabled": False},
        # as long as a key's text, but not base64 of 32 bytes
        "encryption": {"enabled": True, "key_file": "keys/" + "k" * 39},
    }
    config = parse_config(doc, base_dir=tmp_path)
    assert config.encryption.key_file == tmp_path / "keys" / ("k" * 39)


def test_file_paths_are_still_paths(tmp_path: Path) -> None:
    doc = {
        "device": {"thing_name": "x", "data_dir": "data"},
        "cameras": [{"name": "a", "source": {"type": "file", "path": "a.mp4"}}],
        "uplink": {"tls": {"ca": "ca.pem", "cert": "c.pem", "key": "private.pem.key"}},
    }
    config = parse_config(doc, base_dir=tmp_path)
    assert config.uplink.tls is not None
    assert config.uplink.tls.key == tmp_path / "private.pem.key"


def _doc(field: str, url: str) -> dict[str, Any]:
    camera_url = url if field == "cameras.0.source.url" else "rtsp://cam/live"
    doc: dict[str, Any] = {
        "device": {"thing_name": "x"},
        "cameras": [{"name": "a", "source": {"type": "url", "url": camera_url}}],
        "uplink": {"enabled": False},
    }
    section, _, key = field.partition(".")
    if section != "cameras":
        doc[section] = {key: url}
    return doc


URL_FIELDS = ["cameras.0.source.url", "metrics.endpoint_url", "cloudwatch_logs.endpoint_url"]


@pytest.mark.parametrize("field", URL_FIELDS)
@pytest.mark.parametrize("char", [" ", '"', "<", ">", "`", "\\", "\t"])
def test_urls_must_be_one_piece_for_redaction(field: str, char: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_doc(field, f"rtsp://admin:s3{char}cr3t@cam/live"))
    # a discriminated union names its member: cameras.0.source.url.url
    assert [e.path.replace("source.url.", "source.") for e in info.value.errors] == [field]
    assert "percent-encode" in str(info.value)
    assert "cr3t" not in str(info.value)


@pytest.mark.parametrize("field", URL_FIELDS)
def test_percent_encoded_urls_are_accepted(field: str) -> None:
    url = "rtsp://admin:s3%20cr%22t@cam/live?token=a'b"
    config = parse_config(_doc(field, url))
    assert url in config.model_dump_json()
