"""Migration policies behind one interface (`base.Policy`): CALM and its baselines."""

from replay.policies.base import MigrationContext, Policy, Stop, View
from replay.policies.calm import Calm
from replay.policies.clark import Clark
from replay.policies.fixed import Fixed
from replay.policies.qemu import Qemu
from replay.policies.xen import Xen

POLICIES = {"calm": Calm, "clark": Clark, "xen": Xen, "qemu": Qemu, "fixed": Fixed}

__all__ = ["POLICIES", "Calm", "Clark", "Fixed", "MigrationContext", "Policy", "Qemu", "Stop", "View", "Xen"]
