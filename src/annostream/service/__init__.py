"""The service layer: every operation annostream has, as plain functions over a Store.

The HTTP server, the embedded client transport and the CLI are thin skins over these
modules; none of them holds domain logic of its own.
"""
