"""Identity: users, groups, roles, API keys, web sessions, and the policy that decides."""
