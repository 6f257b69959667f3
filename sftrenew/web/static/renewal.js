// The renewal page's script: keeps the live part of the page current without reloading it, asks before
// every button, and sends the buttons' forms with the session's CSRF token. Plain JavaScript, no library,
// nothing fetched but this site's own pages.
"use strict";

(function () {
  const csrf = () => document.body.dataset.csrf || "";
  // How many times the live part was replaced: the browser test reads it (and that the page never reloaded).
  window.sftrenewUpdates = 0;

  function flash(message, ok) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
    box.classList.toggle("flash-error", !ok);
  }

  async function refresh() {
    const live = document.getElementById("live");
    if (!live) return null;
    const response = await fetch(live.dataset.url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (response.redirected || response.status === 401) {
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
      return null;
    }
    if (!response.ok) return null;
    const html = await response.text();
    if (html !== live.dataset.html) {
      live.innerHTML = html;
      live.dataset.html = html;
      window.sftrenewUpdates += 1;
    }
    const summary = live.querySelector(".summary");
    return summary ? summary.dataset.active === "yes" : null;
  }

  function poll() {
    refresh()
      .catch(() => null)
      .then((active) => window.setTimeout(poll, active === false ? 5000 : 1500));
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    event.preventDefault();
    if (!window.confirm(form.dataset.confirm)) return;
    for (const button of form.querySelectorAll("button")) button.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf() },
      });
      let body = { ok: false, message: "the server answered " + response.status };
      try { body = await response.json(); } catch (_) { /* not JSON: keep the status */ }
      flash(body.message, body.ok);
    } catch (error) {
      flash("the server did not answer: " + error, false);
    }
    await refresh().catch(() => null);
  });

  document.addEventListener("change", (event) => {
    if (event.target && event.target.id === "only-failed") {
      document.getElementById("live").classList.toggle("only-failed", event.target.checked);
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    const live = document.getElementById("live");
    if (live) {
      live.dataset.html = live.innerHTML;
      window.setTimeout(poll, 1500);
    }
  });
})();
