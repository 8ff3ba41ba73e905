"""The web chat's stored conversations and the feedback given on their answers.

Every query names the owner: another user's conversation, message or completion behaves
exactly as one that does not exist (not found, never forbidden)."""
