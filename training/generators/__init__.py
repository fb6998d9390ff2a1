"""Candidate generators: one interface, several algorithms, a size-based selector."""

from training.generators.base import CandidateGenerator, top_n

__all__ = ["CandidateGenerator", "top_n"]
