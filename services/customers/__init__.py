"""The customers service: owns customer data, publishes CustomerUpdated on every change and
re-publishes a snapshot when asked (RefreshCustomers)."""
