"""Serving trained models: feature extraction, gallery ranking, FAISS index, Grad-CAM maps, the demo's
backend and ONNX export. Reads checkpoints; never trains."""
