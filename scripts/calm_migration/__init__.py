"""The migration validation harness (scripts/validate-migration): real QEMU live migrations on
localhost against calm's replay of a recording of the same guest, and against QEMU's own
calc-dirty-rate predictor. Modules: guest (kernel + initramfs guests under QEMU TCG), run (one
migration, recorded and predicted), predictor (QEMU's predict_migration.py method), grid and
table (the benchmark and its BENCHMARKS.md table), cli."""


class MigrationError(Exception):
    """A harness failure the user can act on (no qemu or compiler, a guest that did not start)."""
