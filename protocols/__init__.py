"""One folder per protocol, behind one interface (`protocols/base.py`), listed once in
`protocols/registry.py`: the flow, the store, the read side and the page iterate the registry."""
