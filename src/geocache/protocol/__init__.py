"""RESP reading and writing, sans-IO: bytes in, commands out; replies in, bytes out."""
