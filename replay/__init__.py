"""Replay: the CALM cost model, its baselines and trace-driven migration simulation."""
