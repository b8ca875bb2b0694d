"""Evaluation: CMC / mAP / mINP, re-ranking, the CUHK03 metric, the camera gap, ``result.json`` files, and the
tables built from them."""
