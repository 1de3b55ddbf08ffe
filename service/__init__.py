"""The cringe REST service: durable preference-optimization jobs behind a JSON API.

The database is the source of truth. The API records what clients ask for, and a
dispatcher drives an executor towards it and writes back what it observes.
"""
