"""Evaluation: CMC / mAP / mINP, re-ranking, the CUHK03 metric, the camera gap, ``result.json`` files, and the
tables built from them."""

from ccsc_plugin.evaluation.camera_gap import camera_gap_report
from ccsc_plugin.evaluation.machine import machine_record
from ccsc_plugin.evaluation.metrics import DIST_METRICS, Scores, distance_matrix, evaluate_features, evaluate_rank
from ccsc_plugin.evaluation.provenance import provenance, version
from ccsc_plugin.evaluation.ranking import TopKCollector, valid_order
from ccsc_plugin.evaluation.rerank import RerankMemoryError, RerankSettings, check_memory, re_ranking, rerank_blocks
from ccsc_plugin.evaluation.results import (
    RESULT_FILE,
    TEST_DIR,
    ResultFileError,
    check_result,
    read_result,
    result_files,
    write_result,
)
from ccsc_plugin.evaluation.strips import COLOURS, QUERY_COLOUR, bordered, display_tile, rank_strip
from ccsc_plugin.evaluation.tables import check_output, find_results, load_paper_results, render_tables

__all__ = [
    "COLOURS",
    "DIST_METRICS",
    "QUERY_COLOUR",
    "RESULT_FILE",
    "TEST_DIR",
    "RerankMemoryError",
    "RerankSettings",
    "ResultFileError",
    "Scores",
    "TopKCollector",
    "bordered",
    "camera_gap_report",
    "check_memory",
    "check_output",
    "check_result",
    "display_tile",
    "distance_matrix",
    "evaluate_features",
    "evaluate_rank",
    "find_results",
    "load_paper_results",
    "machine_record",
    "provenance",
    "rank_strip",
    "re_ranking",
    "read_result",
    "render_tables",
    "rerank_blocks",
    "result_files",
    "valid_order",
    "version",
    "write_result",
]
