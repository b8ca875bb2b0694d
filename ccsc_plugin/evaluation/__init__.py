"""Evaluation: CMC / mAP, the camera gap, ``result.json`` files, and the tables built from them."""
