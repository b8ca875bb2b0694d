"""The served demo keeps no upload on disk, refused or not, and only the last few answers' images."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from demo_http import CALL_TIMEOUT_S, folder_bytes, png_bytes, served_demo, upload_and_call
from PIL import Image

from ccsc_plugin.serve.demo_backend import DemoBackend, UploadFiles
from ccsc_plugin.serve.gallery import DemoInputError
from ccsc_plugin.shipped import demo_app

UPLOAD_LIMIT = 300_000  # bytes: the not-an-image file below is under it, the oversized one over it
KEEP_ANSWERS = 2  # the server keeps the images of this many answers (small here, so older ones must go)


@pytest.fixture(scope="module")
def backend(demo_checkpoints, module_tmp) -> DemoBackend:
    weights = [str(demo_checkpoints["baseline"]), str(demo_checkpoints["ccsc"])]
    return DemoBackend(weights, cache_dir=module_tmp("uploads-cache"), max_upload_bytes=UPLOAD_LIMIT)


def _person(seed: int) -> bytes:
    """A 64x128 noise 'person': each seed another image, so each answer has images of its own."""
    pixels = np.random.default_rng(seed).integers(0, 256, (128, 64, 3), dtype=np.uint8)
    return png_bytes(Image.fromarray(pixels))


def _uploads(count: int) -> list[tuple[str, bytes, str]]:
    """(file name, bytes, what the demo says) for ``count`` uploads, refused ones among them, a good one last."""
    refused = [
        ("notes.png", b"a text file with an image extension\n" * 7000, "not an image"),  # ~250 kB, under the limit
        ("huge.png", np.random.default_rng(1).bytes(UPLOAD_LIMIT + 100_000), "413"),  # refused by the server
        ("tiny.png", png_bytes(Image.new("RGB", (8, 12))), "only 8x12 pixels"),
    ]
    uploads = []
    for index in range(count):
        if index % 3 == 2:
            uploads.append(refused[(index // 3) % len(refused)])
        else:
            uploads.append((f"person-{index}.png", _person(index), "uploaded image"))
    assert uploads[-1][2] == "uploaded image"
    return uploads


def test_twenty_uploads_leave_the_temporary_folder_as_it_was(backend, tmp_path):
    temp = tmp_path / "gradio-tmp"
    with (
        served_demo(backend, temp, keep_answers=KEEP_ANSWERS) as served,
        httpx.Client(timeout=CALL_TIMEOUT_S) as client,
    ):
        for seed in (100, 101):  # the server's own files, and KEEP_ANSWERS answers, before the uploads counted
            assert upload_and_call(client, served.url, f"warm-{seed}.png", _person(seed)).outputs
        before = folder_bytes(temp)
        answers = []
        for name, payload, expected in _uploads(20):
            answer = upload_and_call(client, served.url, name, payload)
            if expected == "413":
                assert answer.upload_status == 413, name
            else:
                assert answer.error is None and expected in answer.status_text, (name, answer.status_text)
            answers.append(answer)
        grown = folder_bytes(temp) - before
        last = answers[-1]
        assert len(last.files) == 23  # the query, then per row its top-5 and 6 maps
        last_bytes = sum(Path(file["path"]).stat().st_size for file in last.files)
    # the images of at most KEEP_ANSWERS answers, each about the size of the last one: no upload, no older answer
    bound = KEEP_ANSWERS * last_bytes * 1.2 + 64 * 1024
    assert grown <= bound, f"the temporary folder grew by {grown} bytes over 20 uploads (bound {bound:.0f})"
    leftovers = [path.name for path in temp.rglob("*.png") if path.name.startswith(("person-", "notes", "tiny"))]
    assert leftovers == [], f"uploads left in {temp}: {leftovers}"
    assert folder_bytes(temp / "ccsc-answers") == 0  # and the server deletes the answers' images when it stops


def test_a_served_file_sent_back_as_an_upload_is_neither_read_nor_deleted(backend, tmp_path):
    # an answer's image lies in Gradio's temporary folder, which Gradio accepts as an upload's: the demo does not
    with served_demo(backend, tmp_path / "gradio-tmp") as served, httpx.Client(timeout=CALL_TIMEOUT_S) as client:
        answer = upload_and_call(client, served.url, "person.png", _person(7))
        image = answer.files[0]["path"]
        data = {"data": [{"path": image, "meta": {"_type": "gradio.FileData"}}, "gradcam"]}
        call = client.post(served.url + "gradio_api/call/on_upload", json=data)
        events = client.get(served.url + f"gradio_api/call/on_upload/{call.json()['event_id']}").text
        assert "was not uploaded to this demo" in events
        assert Path(image).is_file()


def test_upload_files_reads_once_deletes_and_remembers_identical_uploads(tmp_path):
    first, other = tmp_path / "a1" / "person.png", tmp_path / "b2" / "other.png"
    for path, payload in ((first, b"first"), (other, b"other")):
        path.parent.mkdir()
        path.write_bytes(payload)
    uploads = UploadFiles({str(first), str(other)}, max_bytes=100, remember=1)
    assert uploads.take(str(first)) == b"first"
    assert not first.parent.exists()  # the file and its folder
    assert uploads.take(str(first)) == b"first"  # an identical upload in flight: the same path, the same bytes
    first.parent.mkdir()
    first.write_bytes(b"first")  # an identical upload written again after the first read
    assert uploads.take(str(first)) == b"first" and not first.exists()
    assert uploads.take(str(other)) == b"other"  # remember=1: "first" is forgotten
    with pytest.raises(DemoInputError, match="no longer on the server"):
        uploads.take(str(first))
    stranger = tmp_path / "stranger.png"
    stranger.write_bytes(b"not an upload")
    with pytest.raises(DemoInputError, match="not uploaded to this demo"):
        uploads.take(str(stranger))
    assert stranger.read_bytes() == b"not an upload"


def test_answer_images_keep_only_the_last_answers(tmp_path):
    images = demo_app().AnswerImages(tmp_path / "answers", keep=2)
    tile = np.zeros((20, 10, 3), dtype=np.uint8)
    answers = [images.store([tile, tile]) for _ in range(4)]
    assert len({path for paths in answers for path in paths}) == 8  # every answer its own files
    assert [all(Path(p).is_file() for p in paths) for paths in answers] == [False, False, True, True]
    assert Image.open(answers[-1][0]).size == (10, 20)
