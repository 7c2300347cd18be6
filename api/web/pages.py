"""What the web view's pages share: templates, security headers, the sign-in redirect.

Server-rendered Russian HTML (Jinja2 templates in ``templates/``), one stylesheet and one
small script of ours (``static/``), charts as server-made SVG. No page loads anything from
another host. A page asked with ``X-Live: 1`` answers only its ``<main>`` so the script can
swap it in without a reload (every ``live_interval``).

Who sees what: an inspector every page; an agency its own agency, services, offices and
data quality; another agency's page or data answers 403 with the API's error shape.
"""

# The routes themselves are in ``api/routes/web.py``.

from importlib import resources

import jinja2

from api.scorecard import LEVEL_NAMES
from api.web import ru
from contract.events import CHANNEL_NAMES

LOGIN_COOKIE = "sp_login"
#: Nothing from another host: the policy a browser enforces besides our own discipline.
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SignInRequired(Exception):
    """Raised by a page dependency when nobody is signed in: redirect to /login."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def environment() -> jinja2.Environment:
    """The templates of the web view with the Russian formatting filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("api") / "web" / "templates")),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = ru.num
    env.filters["pct"] = ru.pct
    env.filters["points"] = ru.points
    env.filters["month"] = ru.month
    env.globals["LEVEL_NAMES"] = LEVEL_NAMES
    env.globals["CHANNEL_NAMES"] = CHANNEL_NAMES
    env.globals["plural"] = ru.plural
    env.globals["count"] = ru.count
    return env


def safe_next(value: str | None) -> str:
    """``value`` if it is a path of this site, else ``/`` (no open redirect)."""
    # only paths of this site: no scheme, no host, no protocol-relative //
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value
