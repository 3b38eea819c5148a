"""Built-in simulators of a realistic province's three e-government systems.

``province`` holds a deterministic model of the fictitious "Tỉnh Sơn Hà" (its unit
tree, monthly and daily figures, the mail directory); ``server`` serves that model
over real HTTP in exactly the wire formats of ``docs/sources.md``, with fault
injection for tests; ``python -m monitor.simulators`` runs the servers.
"""

from __future__ import annotations

from monitor.simulators.province import PROVINCE_CODE, ProvinceModel
from monitor.simulators.server import SYSTEM_KINDS, Fault, SimulatorServer

__all__ = ["PROVINCE_CODE", "SYSTEM_KINDS", "Fault", "ProvinceModel", "SimulatorServer"]
