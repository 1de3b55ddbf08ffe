"""The terminal client of the REST API: `cringe submit`, `jobs`, `status`, `watch`, `cancel`.

It talks to a server over HTTP only, so it imports nothing of the server's database or
executor code.
"""
