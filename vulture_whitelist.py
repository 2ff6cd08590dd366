"""Names only users (or libraries, by protocol) call: `scripts/dead-code` runs vulture, which
reads this file as if it used them. Each entry says who uses it."""

from framework._legacy import _MovedModules
from framework.bus import Bus
from framework.cli.contracts import _NoAliases
from framework.contracts import discovery
from framework.testing.memory_bus import MemoryBus, Published

discovery.DEFAULT_MODULES  # public constant kept for importers of earlier versions
_NoAliases.ignore_aliases  # called by PyYAML's dumper
Published.routed_to  # read by tests of services built on the framework
Bus.remove_reconnect_listener  # the public pair of add_reconnect_listener
MemoryBus.remove_reconnect_listener
_MovedModules.find_spec  # importlib's meta path protocol: old module paths
_MovedModules.create_module
_MovedModules.exec_module
