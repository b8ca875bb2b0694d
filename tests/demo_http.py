"""The served demo driven over loopback HTTP, as a script or gradio_client would: upload, call, fetch the images."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import httpx
from PIL import Image

from ccsc_plugin.serve.demo_backend import DemoBackend
from ccsc_plugin.shipped import demo_app

CALL_TIMEOUT_S = 120.0  # one request; a loaded 2-core machine answers in seconds, this only bounds a hang


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def served_demo(backend: DemoBackend, temp_dir: Path, **launch_kwargs) -> Iterator[SimpleNamespace]:
    """The demo served on 127.0.0.1 (a free port) with Gradio's temporary folder at ``temp_dir``."""
    previous = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(temp_dir)
    try:
        app = demo_app().launch(backend, port=free_port(), block=False, **launch_kwargs)
        try:
            assert app.local_url.startswith("http://127.0.0.1:")
            yield SimpleNamespace(app=app, url=app.local_url, temp_dir=temp_dir)
        finally:
            app.close()
    finally:
        if previous is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@dataclass
class Answer:
    """What one upload through the API gave: the upload's HTTP status, then the call's outputs or error."""

    upload_status: int
    outputs: list | None = None
    error: str | None = None
    files: list[dict] = field(default_factory=list)  # every image of the outputs: FileData dicts

    @property
    def status_text(self) -> str:
        return next((o for o in self.outputs or [] if isinstance(o, str) and o.startswith("**Query")), "") or next(
            (o for o in self.outputs or [] if isinstance(o, str) and "⚠️" in o), ""
        )


def _file_data(value) -> list[dict]:
    """The FileData dicts inside an output (an image, or a gallery of ``{"image": ..., "caption": ...}``)."""
    if isinstance(value, dict):
        if "path" in value and "url" in value:
            return [value]
        return [found for item in value.values() for found in _file_data(item)]
    if isinstance(value, list):
        return [found for item in value for found in _file_data(item)]
    return []


def upload_and_call(client: httpx.Client, url: str, name: str, payload: bytes, kind: str = "gradcam") -> Answer:
    """POST the file to /gradio_api/upload, then call the upload handler with it and read the result stream."""
    response = client.post(url + "gradio_api/upload", files={"files": (name, payload, "image/png")})
    if response.status_code != 200:
        return Answer(response.status_code)
    (path,) = response.json()
    data = {"data": [{"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}, kind]}
    call = client.post(url + "gradio_api/call/on_upload", json=data)
    call.raise_for_status()
    stream = client.get(url + f"gradio_api/call/on_upload/{call.json()['event_id']}").text
    event = data_line = None
    for line in stream.splitlines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event in ("complete", "error"):
            data_line = line.removeprefix("data: ")
            break
    if event != "complete":
        return Answer(200, error=f"{event}: {data_line}")
    outputs = json.loads(data_line)
    return Answer(200, outputs=outputs, files=_file_data(outputs))


def fetch_image(client: httpx.Client, file: dict) -> Image.Image:
    """GET one output image by its URL and decode it (a short or damaged body raises)."""
    response = client.get(file["url"])
    response.raise_for_status()
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image
