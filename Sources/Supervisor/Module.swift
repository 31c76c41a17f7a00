// Module Supervisor: the process factory, services, restart policies, readiness, logs and worker
// pools (DESIGN.md §7). Depends on Core and Registry. It holds no code yet: the supervisor issue
// builds it.
