"""Data packages through the in-process app: upload, query, download, search, metadata; and
every refused upload leaves neither a file nor a row behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import falcon.testing
import pytest

from otszmq.store.models import DataPackage
from tests.unit.test_api import UPLOAD_LIMIT, assert_error, make_client

PAYLOAD = b"PK\x03\x04" + bytes(range(256)) * 8  # 2 KiB of not-text
SHA = hashlib.sha256(PAYLOAD).hexdigest()
BOUNDARY = "otszmq-test-boundary"


def multipart(data: bytes, filename: str = "pkg.zip", part: str = "assetfile") -> tuple[
        bytes, dict[str, str]]:
    body = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{part}\"; "
        f"filename=\"{filename}\"\r\nContent-Type: application/zip\r\n\r\n"
    ).encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.fixture
def client(tmp_path: Path) -> falcon.testing.TestClient:
    return make_client(tmp_path)


def upload(client, data: bytes = PAYLOAD, **params: str) -> falcon.testing.Result:
    body, headers = multipart(data)
    query = {"hash": hashlib.sha256(data).hexdigest(), "filename": "pkg.zip",
             "creatorUid": "ANDROID-1", **params}
    return client.simulate_post("/Marti/sync/missionupload", params=query, body=body,
                                headers=headers)


def stored_nothing(tmp_path: Path) -> bool:
    packages = tmp_path / "packages"
    files = list(packages.iterdir()) if packages.exists() else []
    return not files and DataPackage.select().count() == 0


def test_upload_then_query_download_search(client, tmp_path):
    missing = client.simulate_get("/Marti/sync/missionquery", params={"hash": SHA})
    assert_error(missing, 404, SHA)

    result = upload(client)
    assert result.status_code == 200, result.text
    assert result.text == f"http://falconframework.org/Marti/sync/content?hash={SHA}"
    assert (tmp_path / "packages" / SHA).read_bytes() == PAYLOAD
    row = DataPackage.get(DataPackage.hash == SHA)
    assert (row.filename, row.creator_uid, row.size, row.tool) == (
        "pkg.zip", "ANDROID-1", len(PAYLOAD), "public")

    assert client.simulate_get("/Marti/sync/missionquery", params={"hash": SHA}).text == \
        result.text
    download = client.simulate_get("/Marti/sync/content", params={"hash": SHA})
    assert download.status_code == 200
    assert download.content == PAYLOAD
    assert download.headers["content-type"] == "application/x-zip-compressed"
    assert 'filename="pkg.zip"' in download.headers["content-disposition"]
    head = client.simulate_head("/Marti/sync/content", params={"uid": SHA})
    assert head.status_code == 200 and head.headers["content-length"] == str(len(PAYLOAD))
    assert client.simulate_get(f"/Marti/api/sync/metadata/{SHA}/tool").content == PAYLOAD

    search = client.simulate_get("/Marti/sync/search").json
    assert search["resultCount"] == 1
    item = search["results"][0]
    assert item["Hash"] == item["UID"] == SHA
    assert item["Name"] == "pkg.zip" and item["Size"] == len(PAYLOAD)
    assert item["CreatorUid"] == "ANDROID-1" and item["Keywords"] == ["missionpackage"]
    assert item["SubmissionDateTime"].endswith("Z")
    assert client.simulate_get("/Marti/sync/search", params={"tool": "private"}).json == {
        "resultCount": 0, "results": []}


def test_reupload_is_one_row(client):
    assert upload(client).status_code == 200
    assert upload(client, filename="renamed.zip").status_code == 200
    assert DataPackage.select().count() == 1
    assert DataPackage.get().filename == "renamed.zip"


def test_raw_body_upload(client, tmp_path):
    result = client.simulate_post(
        "/Marti/sync/missionupload", params={"filename": "notes.txt"}, body=b"hello",
        headers={"Content-Type": "application/octet-stream"})
    assert result.status_code == 200, result.text
    sha = hashlib.sha256(b"hello").hexdigest()
    assert (tmp_path / "packages" / sha).read_bytes() == b"hello"


def test_metadata_tool_and_keywords(client):
    upload(client)
    result = client.simulate_put(f"/Marti/api/sync/metadata/{SHA}/tool", body=b"private")
    assert result.status_code == 200
    assert DataPackage.get().tool == "private"
    assert client.simulate_get("/Marti/sync/search", params={"tool": "private"}).json[
        "resultCount"] == 1
    result = client.simulate_put(f"/Marti/api/sync/metadata/{SHA}/keywords",
                                 json=["route", "night"])
    assert result.json["Keywords"] == ["route", "night"]
    found = client.simulate_get("/Marti/sync/search", params={"keywords": "night"}).json
    assert found["resultCount"] == 1


@pytest.mark.parametrize(("body", "detail"), [
    (b"[\"route\", ", "JSON"), (b"{\"keywords\": 1}", "array of strings"),
    (b"[1, 2]", "array of strings"), (b"", "body"),
])
def test_keywords_refuses_bad_json(client, body, detail):
    upload(client)
    result = client.simulate_put(f"/Marti/api/sync/metadata/{SHA}/keywords", body=body,
                                 headers={"Content-Type": "application/json"})
    assert result.status_code == 400, result.text
    assert set(result.json) == {"error", "detail"}
    assert detail.lower() in (result.json["error"] + result.json["detail"]).lower()
    assert DataPackage.get().keywords == '["missionpackage"]'


def test_metadata_tool_refuses_other_values_and_unknown_hashes(client):
    upload(client)
    assert_error(client.simulate_put(f"/Marti/api/sync/metadata/{SHA}/tool", body=b"all"),
                 400, "public or private")
    assert DataPackage.get().tool == "public"
    other = "0" * 64
    assert_error(client.simulate_put(f"/Marti/api/sync/metadata/{other}/tool",
                                     body=b"private"), 404, other)


@pytest.mark.parametrize("name", ["../evil.zip", "a/b.zip", "..", "a\\b.zip", "a\x00.zip",
                                  "bell\x07.zip", "x" * 256, ""])
def test_path_escape_names_are_refused(client, tmp_path, name):
    assert_error(upload(client, filename=name), 400, "filename")
    assert stored_nothing(tmp_path)


def test_part_filename_is_checked_too(client, tmp_path):
    body, headers = multipart(PAYLOAD, filename="../../etc/passwd")
    result = client.simulate_post("/Marti/sync/missionupload", body=body, headers=headers)
    assert_error(result, 400, "filename")
    assert stored_nothing(tmp_path)


def test_oversized_upload_is_413(client, tmp_path):
    big = b"x" * (UPLOAD_LIMIT + 1)
    assert_error(upload(client, data=big), 413, str(UPLOAD_LIMIT))
    assert stored_nothing(tmp_path)
    # At the limit exactly it is accepted.
    assert upload(client, data=b"y" * UPLOAD_LIMIT).status_code == 200


def test_oversized_by_content_length_is_refused_before_reading(client, tmp_path):
    result = client.simulate_post(
        "/Marti/sync/missionupload", params={"filename": "a.zip"}, body=b"z" * 100_000,
        headers={"Content-Type": "application/octet-stream"})
    assert_error(result, 413, "at most")
    assert stored_nothing(tmp_path)


def test_hash_mismatch_stores_nothing(client, tmp_path):
    assert_error(upload(client, hash="a" * 64), 400, "hash")
    assert stored_nothing(tmp_path)


def test_hash_mismatch_keeps_an_earlier_good_upload(client, tmp_path):
    upload(client)
    assert_error(upload(client, hash="b" * 64), 400, "hash")
    assert (tmp_path / "packages" / SHA).read_bytes() == PAYLOAD
    assert [p.name for p in (tmp_path / "packages").iterdir()] == [SHA]


@pytest.mark.parametrize("params", [{"hash": "../../etc/passwd"}, {"hash": "abc"},
                                    {"tool": "everyone"}, {"creatorUid": "a\nb"}])
def test_bad_upload_parameters(client, tmp_path, params):
    assert upload(client, **params).status_code == 400
    assert stored_nothing(tmp_path)


def test_multipart_without_file_part(client, tmp_path):
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"
            f"--{BOUNDARY}--\r\n").encode()
    result = client.simulate_post(
        "/Marti/sync/missionupload", params={"filename": "a.zip"}, body=body,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert_error(result, 400, "file part")
    assert stored_nothing(tmp_path)


def test_malformed_multipart(client, tmp_path):
    result = client.simulate_post(
        "/Marti/sync/missionupload", params={"filename": "a.zip"}, body=b"garbage",
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert result.status_code == 400
    assert set(result.json) == {"error", "detail"}
    assert stored_nothing(tmp_path)


@pytest.mark.parametrize("query", [{}, {"hash": "../../../etc/passwd"}, {"hash": "g" * 64}])
def test_content_refuses_bad_hashes(client, query):
    assert_error(client.simulate_get("/Marti/sync/content", params=query), 400, "hash")


def test_content_unknown_hash_is_404(client):
    assert_error(client.simulate_get("/Marti/sync/content", params={"hash": "c" * 64}),
                 404, "c" * 64)
