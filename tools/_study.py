"""Shared command-line options of the study scripts (data location, results folder, --quick)."""

from __future__ import annotations

import argparse


def study_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="dataset root (default: $EDGECLS_DATA)")
    parser.add_argument("--out", default="results", help="results folder (JSON, Markdown, PNG)")
    parser.add_argument("--quick", action="store_true", help="tiny subsets and one epoch: minutes on a CPU")
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs of the full run")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--subset", type=int, default=None, help="class-balanced training images for the full run")
    return parser
