"""The tamper-evident audit trail, its verification and export, and the optional content log
with its redactors: what happened, who did it, and (when enabled) what was said."""
