"""The ``ccsc-reid`` commands that serve a trained model: ``extract``, ``export`` and ``demo``."""

from __future__ import annotations

import argparse
import sys

from ccsc_plugin.config import RecipeError, load_config


def run_extract(args: argparse.Namespace) -> None:
    """Write the features of ``--images`` to ``--out`` and say what was written."""
    from ccsc_plugin.serve.extract import extract

    print(extract(args.weights, args.images, args.out, args.batch_size, args.flip, args.overwrite))


def run_export(args: argparse.Namespace) -> int:
    """Write the ONNX file and check onnxruntime against PyTorch; exit status 1 when they differ."""
    from ccsc_plugin.serve.export import MAX_DIFFERENCE, export_from, is_recipe

    if args.overrides and not is_recipe(args.source):
        raise RecipeError("--set applies to a recipe; a checkpoint's model is exported with its stored recipe.")
    cfg = load_config(args.source, args.overrides) if is_recipe(args.source) else None
    path, difference = export_from(args.source, args.onnx, cfg, flip=args.flip)
    print(f"Wrote {path}; onnxruntime vs PyTorch features: max |difference| = {difference:.2e}")
    if difference > MAX_DIFFERENCE:
        print(f"ccsc-reid export: error: the difference exceeds {MAX_DIFFERENCE:g}.", file=sys.stderr)
        return 1
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Load the checkpoints and data, then serve the Gradio app (``demo/app.py``)."""
    from ccsc_plugin.serve.demo_backend import DEFAULT_WEIGHTS, DemoBackend
    from ccsc_plugin.serve.gallery import DemoInputError
    from ccsc_plugin.shipped import demo_app

    app = demo_app()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        backend = DemoBackend(
            weights=args.weights or DEFAULT_WEIGHTS,
            dataset=args.dataset,
            data_root=args.data_root,
            cache_dir=args.cache_dir,
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            example_query=args.example_query,
            flip=args.flip,
        )
    except DemoInputError as error:
        print(f"ccsc-reid demo: error: {error}", file=sys.stderr)
        return 2
    for error in backend.errors:
        print(f"ccsc-reid demo: warning: {error}", file=sys.stderr)
    backend.warm_up()
    app.launch(backend, host=args.host, port=args.port, share=args.share)
    return 0
