// ServicePulse live pages: fetch this page's <main> every few seconds and swap it in.
// No library, no other host; stops while the tab is hidden; a 401 means the session ended.
(function () {
  "use strict";
  var main = document.getElementById("live");
  if (!main || main.dataset.live !== "1") { return; }
  var every = Math.max(2, parseInt(main.dataset.interval || "15", 10)) * 1000;
  var busy = false;
  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(window.location.href, { headers: { "X-Live": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        if (resp.status === 401) { window.location.reload(); return null; }
        return resp.ok ? resp.text() : null;
      })
      .then(function (html) {
        if (html === null || html === undefined) { return; }
        var active = document.activeElement;
        if (active && main.contains(active) && active.tagName === "INPUT") { return; }
        main.innerHTML = html;
        main.dataset.updated = String(Date.now());
      })
      .catch(function () { /* the next tick tries again */ })
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(); } });
}());
