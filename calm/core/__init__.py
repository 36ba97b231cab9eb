"""The ground floor every layer may import: errors with exit codes, units, output paths,
progress, argument types and the version. It imports nothing else of calm's."""
