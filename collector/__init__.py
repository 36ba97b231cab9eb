"""Collector: samples per-page dirtying of live processes into HDF5 traces."""
