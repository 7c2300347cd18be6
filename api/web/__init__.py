"""The web view: server-rendered Russian pages for inspectors and agencies (see pages.py)."""
