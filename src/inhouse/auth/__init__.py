"""Identity: who is calling, and with which key."""
