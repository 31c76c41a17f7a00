// Module Registry: entries, YAML loading, kinds and validation, versions, apply, the SQLite
// history store, rollback, Finder and folder watching (DESIGN.md §6). Depends on Core only.
// It holds no code yet: the registry issue builds it.
