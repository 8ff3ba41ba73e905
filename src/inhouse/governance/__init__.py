"""Around every model request: whether the caller may use the model, what it may spend
(quota reservation), and, however the request ends, its settlement: the real count, a usage
row and an audit entry. A domain service: it knows principals, not HTTP requests."""
