"""Message contracts shared by the example services; `framework schema` exports them.

Every `type_name` ends in a version (`.v1`): a change that old producers or consumers cannot
cope with gets a new class with the next version, and the snapshot test in
tests/unit/test_contract_snapshots.py enforces that.
"""
