"""The payments service: charges orders through a (simulated) external gateway, guarded by a
timeout and a circuit breaker, and announces PaymentSucceeded or PaymentFailed."""
