/* Countersign staff dashboard: Stop, on the card of a request whose session is live (issue 14).
 *
 * A person with the permission approvals.stop_session ends the guest's session from any card of
 * it: they say why (kept in the audit, never told to the guest) and press Stop session. The
 * server closes the session, cancels its pending requests (their cards go) and tells the relay,
 * which disconnects the assistant and the guest's device. Loaded before dashboard.js, which
 * calls countersignStop.render(card, request) whenever it fills a card. Text only, never HTML.
 */
(() => {
  "use strict";

  const gettext = window.gettext || ((text) => text);
  const root = document.getElementById("dashboard");
  if (!root) return;
  const canStop = root.dataset.canStop === "true";
  const stopUrl = (id) => root.dataset.stopUrl.replace("/0/", `/${id}/`);

  function say(el, text, kind) {
    const msg = el.querySelector(".msg");
    if (!msg) return;
    msg.textContent = text || "";
    msg.className = `msg ${kind || ""}`;
  }

  async function stop(el, box) {
    const input = box.querySelector(".stop-reason");
    const reason = input.value.trim();
    if (!reason) {
      say(el, gettext("Say why the session is stopped: the audit keeps it."), "error");
      input.focus();
      return;
    }
    const button = box.querySelector(".stop-session");
    button.disabled = true;
    const body = new URLSearchParams({ reason });
    let response;
    try {
      response = await fetch(stopUrl(box.dataset.sessionId), {
        method: "POST",
        headers: { "X-CSRFToken": root.dataset.csrfToken, Accept: "application/json" },
        credentials: "same-origin",
        body,
      });
    } catch {
      button.disabled = false;
      say(el, gettext("Countersign could not be reached. Try again."), "error");
      return;
    }
    const data = await response.json().catch(() => ({}));
    button.disabled = false;
    if (!response.ok) {
      say(el, data.error || gettext("The session could not be stopped."), "error");
      return;
    }
    box.hidden = true;
    say(el, gettext("Session stopped."), "info");
  }

  function render(el, req) {
    const box = el.querySelector(".stop-box");
    if (!box) return;
    const session = req.session || {};
    box.hidden = !(canStop && req.status === "pending" && session.status === "open" && session.kind === "relay");
    box.dataset.sessionId = String(session.id);
    if (!box.dataset.wired) {
      box.dataset.wired = "1";
      box.querySelector(".stop-form").addEventListener("submit", (event) => event.preventDefault());
      box.querySelector(".stop-session").addEventListener("click", () => stop(el, box));
      box.querySelector(".stop-reason").addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          stop(el, box);
        }
      });
    }
  }

  window.countersignStop = { render };
})();
