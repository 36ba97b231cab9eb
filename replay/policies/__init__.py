"""Migration policies behind one interface (`base.Policy`): CALM and its baselines."""

from calm.replay.policies.base import MigrationContext, Policy, Stop, View
from calm.replay.policies.calm import Calm
from calm.replay.policies.calm_pages import CalmPages
from calm.replay.policies.clark import Clark
from calm.replay.policies.clark_adaptive import ClarkAdaptive
from calm.replay.policies.fixed import Fixed
from calm.replay.policies.qemu import Qemu
from calm.replay.policies.xen import Xen

POLICIES = {"calm": Calm, "calm-pages": CalmPages, "clark": Clark, "clark-adaptive": ClarkAdaptive, "xen": Xen, "qemu": Qemu, "fixed": Fixed}

__all__ = ["POLICIES", "Calm", "CalmPages", "Clark", "ClarkAdaptive", "Fixed", "MigrationContext", "Policy", "Qemu", "Stop", "View", "Xen"]
