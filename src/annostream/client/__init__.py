"""The SDK: Project, Dataset and the transports they read through."""
