"""Interfaces: the command line, the terminal chat, the HTTP server and its client."""
