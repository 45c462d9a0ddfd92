// The Apogee console's own script. Pages work without it; it only keeps parts of a page
// current: an element with `data-refresh="<seconds>"` and `data-src="<url>"` has its
// content replaced with what that URL answers (an HTML fragment of the same page, rendered
// by the server) every that many seconds, while the tab is visible.
"use strict";

function refreshEvery(el) {
  const seconds = Math.max(5, parseInt(el.dataset.refresh, 10) || 15);
  const url = el.dataset.src;
  if (!url) return;
  setInterval(async () => {
    if (document.hidden) return;
    try {
      const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (r.ok) {
        el.innerHTML = await r.text();
        el.dataset.refreshedAt = new Date().toISOString();
      }
    } catch (e) {
      // The next tick tries again; the page keeps what it shows.
    }
  }, seconds * 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh]").forEach(refreshEvery);
});
