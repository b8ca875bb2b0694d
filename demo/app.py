"""The ccsc-reid browser demo (Gradio Blocks): top-5 retrievals and response maps, baseline vs CCSC.

Start it with ``make demo`` or
``ccsc-reid demo [--weights W ...] [--dataset D] [--example-query N] [--host H] [--port P]``, which imports
this file as ``ccsc_plugin.demo.app`` (the wheel ships it there). The logic lives in
``ccsc_plugin.serve.demo_backend``; this file only lays out the page and turns answers and errors into
component updates.

Nothing piles up in Gradio's temporary folder (``GRADIO_TEMP_DIR``): an upload's file is deleted as soon as
its bytes are read, refused or not; each answer's images are files of its own (never rewritten while another
request streams them), and only the last ``KEEP_ANSWERS`` answers' images are kept; Gradio's cache cleaning
deletes whatever else is older than an hour (an upload never submitted), and its files when the server stops.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.utils import get_upload_folder
from PIL import Image

from ccsc_plugin.evaluation.strips import display_tile
from ccsc_plugin.serve.demo_backend import DemoBackend, ModelAnswer, Query, UploadFiles
from ccsc_plugin.serve.gallery import DemoInputError

LOG = logging.getLogger("ccsc-reid.demo")
MAP_CHOICES = [("Grad-CAM (similarity to the match)", "gradcam"), ("Feature-map intensity (paper Fig. 4)", "intensity")]
THUMBNAILS = 200
TILE_ROW_HEIGHT = 270  # one row of tiles, without empty space below
CSS = ".tile-gallery img { object-fit: contain !important; }"
KEEP_ANSWERS = 16  # answers whose images stay on disk: a page fetches its images long before 16 more answers
DELETE_CACHE = (600, 3600)  # every 10 minutes, Gradio deletes its temporary files older than an hour


class AnswerImages:
    """Each answer's images, written to a folder of its own under ``folder``; the last ``keep`` answers' stay.

    ``folder`` lies in Gradio's temporary folder, so Gradio serves the files where they are (no copy), and a
    file is never written again once returned: a request streaming it always reads it whole.
    """

    def __init__(self, folder: Path, keep: int = KEEP_ANSWERS) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1 (the answer being shown), not {keep}")
        self.folder, self.keep = folder, keep
        self._answers: deque[Path] = deque()
        self._lock = threading.Lock()

    def store(self, images: list[np.ndarray]) -> list[str]:
        """Write one answer's images (uint8 HxWx3) and return their paths; delete the answers beyond ``keep``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        answer = Path(tempfile.mkdtemp(prefix="answer-", dir=self.folder))
        paths = []
        for index, image in enumerate(images):
            paths.append(str(answer / f"{index:02d}.webp"))
            Image.fromarray(image).save(paths[-1], format="WEBP", quality=90)
        with self._lock:
            self._answers.append(answer)
            old = [self._answers.popleft() for _ in range(len(self._answers) - self.keep)]
        for folder in old:
            shutil.rmtree(folder, ignore_errors=True)
        return paths


def _status(query: Query) -> str:
    if query.index is None:
        source = "uploaded image (identity unknown)"
    else:
        source = f"query #{query.index} (identity {query.pid}, camera {query.camid})"
    lines = [f"**Query:** {source}"]
    lines += [f"⚠️ Note: {note}." for note in query.notes]
    return "\n\n".join(lines)


def _answer_updates(images: AnswerImages, query: Query, answers: list[ModelAnswer]) -> list:
    """The query view, then per row its summary, top-k and maps: every image a new file (``images``)."""
    tiles = [display_tile(query.image)] + [tile for answer in answers for tile, _ in answer.results + answer.maps]
    paths = iter(images.store(tiles))
    updates = [next(paths)]
    for answer in answers:
        results = [(next(paths), caption) for _, caption in answer.results]
        updates += [answer.summary, results, [(next(paths), caption) for _, caption in answer.maps]]
    return updates


def _tile_row(label: str, elem_id: str, topk: int, visible: bool, value: list) -> gr.Gallery:
    """One row of tiles: the top-k matches, or their response maps and the query's."""
    return gr.Gallery(
        value=value,
        label=label,
        columns=topk + 1,
        fit_columns=False,
        height=TILE_ROW_HEIGHT,
        allow_preview=False,
        visible=visible,
        elem_id=elem_id,
        elem_classes=["tile-gallery"],
    )


def build_app(backend: DemoBackend, keep_answers: int = KEEP_ANSWERS) -> gr.Blocks:
    """The page: query picker and upload, a map switch, then one row of top-5 and maps per checkpoint.

    It opens with the backend's example query already answered (computed once here, so a page load
    costs no model time): the visitor sees both rows at work before any click. The images of the last
    ``keep_answers`` answers stay on disk.
    """
    default_kind = MAP_CHOICES[0][1]
    example, example_answers = backend.example_answer(default_kind)
    images = AnswerImages(Path(get_upload_folder()) / "ccsc-answers", keep_answers)
    with gr.Blocks(title="ccsc-reid demo", analytics_enabled=False, delete_cache=DELETE_CACHE) as app:
        uploads = UploadFiles(app.upload_file_set, backend.max_upload_bytes)
        _header(backend)
        picker, upload, query_view, map_kind, status = _query_panel(backend, example, default_kind)
        rows = _answer_rows(backend, example_answers)
        current = gr.State(example)  # the Query being shown, re-answered when the map switch changes
        outputs = [current, query_view, status, *rows]

        def on_pick(kind: str, evt: gr.SelectData):
            index = int(evt.index)  # an index into the server's own query list: no client path is used
            return _respond(backend, images, lambda: backend.query_from_set(index), kind, len(rows))

        def on_upload(payload: dict | None, kind: str):
            def query() -> Query:  # Gradio checked that the path is an upload's; read, then deleted at once
                return backend.query_from_upload(None if payload is None else uploads.take(payload["path"]))

            return _respond(backend, images, query, kind, len(rows))

        def on_switch(query: Query, kind: str):
            return _respond(backend, images, lambda: query, kind, len(rows))

        picker.select(on_pick, inputs=[map_kind], outputs=outputs)
        # preprocess=False: the handler gets the upload's file data (its path), not bytes read by Gradio
        upload.upload(on_upload, inputs=[upload, map_kind], outputs=outputs, preprocess=False)
        map_kind.change(on_switch, inputs=[current, map_kind], outputs=outputs)
    return app


def _header(backend: DemoBackend) -> None:
    """The title, the dataset's size and how to read the frames."""
    data = backend.data
    gr.Markdown(
        f"# ccsc-reid: who is this person?\n"
        f"Dataset **{data.name}**: {len(data.query)} queries, {len(data.gallery)} gallery images. "
        "Green frame: right identity, red: wrong (gallery images of the query's identity from the query's "
        "own camera are skipped, as the evaluation protocol does)."
    )


def _query_panel(
    backend: DemoBackend, example: Query, default_kind: str
) -> tuple[gr.Gallery, gr.File, gr.Image, gr.Radio, gr.Markdown]:
    """The query set to click and the upload (left), the query shown, the map switch and the status (right)."""
    data = backend.data
    with gr.Row():
        with gr.Column(scale=3):
            picker = gr.Gallery(
                value=backend.query_thumbnails(THUMBNAILS),
                label=f"Query set (first {min(THUMBNAILS, len(data.query))} of {len(data.query)}): click one",
                columns=10,
                height=300,
                allow_preview=False,
                object_fit="contain",
                elem_id="query-set",
            )
            upload = gr.File(
                label=f"...or upload a person image (JPEG/PNG, at most {backend.max_upload_bytes // 2**20} MiB)",
                file_types=["image"],
                type="filepath",  # read (and deleted) by the upload handler, which Gradio gives the file data
                elem_id="upload",
            )
        with gr.Column(scale=1):
            query_view = gr.Image(
                display_tile(example.image), label="Query", interactive=False, height=260, elem_id="query-image"
            )
            map_kind = gr.Radio(MAP_CHOICES, value=default_kind, label="Response map", elem_id="map-kind")
            status = gr.Markdown(f"{_status(example)}\n\nPick another query or upload an image.", elem_id="status")
    return picker, upload, query_view, map_kind, status


def _answer_rows(backend: DemoBackend, answers: list[ModelAnswer]) -> list:
    """Per checkpoint: its summary, its top-k tiles and their response maps, filled with ``answers``."""
    rows = []
    for index, (slot, answer) in enumerate(zip(backend.slots, answers, strict=True)):
        with gr.Group():
            summary = gr.Markdown(answer.summary, elem_id=f"summary-{index}")
            visible = slot.error is None
            results = _tile_row(
                f"{slot.label}: top-{backend.topk}", f"results-{index}", backend.topk, visible, answer.results
            )
            maps = _tile_row(
                f"{slot.label}: response maps of each match, then of the query",
                f"maps-{index}",
                backend.topk,
                visible,
                answer.maps,
            )
        rows += [summary, results, maps]
    return rows


def _respond(
    backend: DemoBackend, images: AnswerImages, make_query: Callable[[], Query], kind: str, num_rows: int
) -> list:
    """The page's updates for the query ``make_query`` gives: every row answered, or the error in the status."""
    try:
        query = make_query()
        answers = backend.answer(query, kind)
        updates = _answer_updates(images, query, answers)
    except DemoInputError as error:
        return [gr.skip(), gr.skip(), f"⚠️ {error}", *[gr.skip()] * num_rows]
    except Exception as error:  # keep serving; the terminal gets the traceback
        LOG.exception("query failed")
        return [
            gr.skip(),
            gr.skip(),
            f"⚠️ Internal error ({type(error).__name__}: {error}).",
            *[gr.skip()] * num_rows,
        ]
    return [query, updates[0], _status(query), *updates[1:]]


def launch(
    backend: DemoBackend,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    block: bool = True,
    keep_answers: int = KEEP_ANSWERS,
) -> gr.Blocks:
    """Serve the app; ``127.0.0.1`` unless another host is asked for. Uploads above the backend's limit are refused."""
    app = build_app(backend, keep_answers)
    app.queue(default_concurrency_limit=1)  # one query at a time: each uses every core
    app.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=backend.max_upload_bytes,
        prevent_thread_lock=not block,
        show_error=True,
        css=CSS,
        ssr_mode=False,
        quiet=not block,
    )
    return app
