"""The API's routes, one ``APIRouter`` per concern; :func:`api.app.create_app` includes them.

A route module imports :mod:`api.deps` for what it needs and never another route module.
"""
