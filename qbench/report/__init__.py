"""``qbench report``: run records → leaderboards (md, csv, html, tex) and plots."""

from .leaderboard import build_leaderboard, load_runs, report

__all__ = ["build_leaderboard", "load_runs", "report"]
