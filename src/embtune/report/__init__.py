"""The data report: duplicates, leakage, truncation, short texts, labels, encoding damage, pair problems."""

from .options import DataChecks
from .report import DataReport, DatasetReport, Finding
from .run import build_report, check_recipe_data, report_before_training

__all__ = ["DataChecks", "DataReport", "DatasetReport", "Finding", "build_report", "check_recipe_data",
           "report_before_training"]
