"""Fifty simultaneous uploads of one image through the served demo's API: every answer whole, none lost."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait

import httpx
import pytest
from demo_http import CALL_TIMEOUT_S, fetch_image, png_bytes, served_demo, upload_and_call
from PIL import Image

from ccsc_plugin.evaluation.strips import BORDER, DISPLAY_SIZE
from ccsc_plugin.serve.demo_backend import DemoBackend

CLIENTS = 50
ALL_DONE_S = 600  # bounds the whole burst: about a minute on a loaded 2-core machine
FRAMED = (DISPLAY_SIZE[1] + 2 * BORDER, DISPLAY_SIZE[0] + 2 * BORDER)  # width, height of a framed tile
QUERY = (DISPLAY_SIZE[1], DISPLAY_SIZE[0])  # the query view, unframed


@pytest.fixture(scope="module")
def backend(demo_checkpoints, module_tmp) -> DemoBackend:
    weights = [str(demo_checkpoints["baseline"]), str(demo_checkpoints["ccsc"])]
    return DemoBackend(weights, cache_dir=module_tmp("concurrency-cache"))


def _one_client(url: str, payload: bytes):
    """One visitor's upload, answer and every image of it, over its own connection."""
    with httpx.Client(timeout=CALL_TIMEOUT_S) as client:
        answer = upload_and_call(client, url, "person.png", payload)
        return answer, [fetch_image(client, file).size for file in answer.files]


@pytest.mark.slow
def test_fifty_simultaneous_uploads_are_all_answered_whole(backend, tmp_path):
    # one image for all: identical answers, whose images an unsafe server would write to one path each time
    payload = png_bytes(Image.open(backend.data.query[0].path).convert("RGB"))
    with served_demo(backend, tmp_path / "gradio-tmp") as served:
        pool = ThreadPoolExecutor(max_workers=CLIENTS)
        try:
            futures = [pool.submit(_one_client, served.url, payload) for _ in range(CLIENTS)]
            _, pending = wait(futures, timeout=ALL_DONE_S)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        assert not pending, f"{len(pending)} of {CLIENTS} calls still running after {ALL_DONE_S} s"
        failures = [repr(future.exception()) for future in futures if future.exception() is not None]
        assert failures == [], f"{len(failures)} of {CLIENTS} calls failed: {failures[:3]}"
    answers = [future.result() for future in futures]
    for answer, sizes in answers:
        assert answer.error is None and "uploaded image" in answer.status_text, answer.error
        assert len(answer.files) == 23  # the query, then per row its top-5 and 6 maps
        assert sizes.count(QUERY) == 1 and sizes.count(FRAMED) == 22, sizes
    paths = [file["path"] for answer, _ in answers for file in answer.files]
    # each answer's images are files of its own, never rewritten while another request streams them
    assert len(set(paths)) == len(paths), f"{len(paths) - len(set(paths))} image files shared between answers"
