"""Authentication and authorisation: who is asking (identity), with which
credentials (JWTs, API keys), and what they may do (roles)."""
