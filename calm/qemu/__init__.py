"""Talking to a running QEMU: a QMP client (`qmp`) and live-migration commands on top of it
(`migration`). Used by the migration validation harness (scripts/validate-migration) and by
commands that drive a real migration. Imports only calm.core (and the qemu.qmp library)."""
