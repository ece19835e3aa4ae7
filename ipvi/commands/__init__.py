"""One module of CLI commands per stage; each exposes ``register(app)``."""
