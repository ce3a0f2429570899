"""rcp, the Recursive Coding Platform: a swarm of local LLM nodes that split, solve, test and integrate code."""

__version__ = "0.1.0"
