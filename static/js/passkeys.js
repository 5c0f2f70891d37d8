/* The profile page's passkeys: register one (options from the server, the browser creates the
 * credential, the server verifies and keeps it). Removing one is a plain form.
 */
(() => {
  "use strict";

  const root = document.getElementById("passkeys");
  if (!root) return;
  const gettext = window.gettext || ((text) => text);
  const webauthn = window.Countersign && window.Countersign.webauthn;
  const form = document.getElementById("passkey-add");
  const msg = document.getElementById("passkey-msg");
  const csrf = root.dataset.csrfToken;

  const say = (text, kind) => {
    msg.textContent = text;
    msg.className = `msg ${kind || ""}`;
  };

  if (!webauthn || !webauthn.supported()) {
    form.querySelector("button").disabled = true;
    say(gettext("This browser cannot use passkeys."), "error");
    return;
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "X-CSRFToken": csrf, Accept: "application/json", "Content-Type": "application/json" },
      credentials: "same-origin",
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || gettext("Countersign refused it. Reload the page and try again."));
    return data;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    say(gettext("Follow your browser's prompt…"), "");
    try {
      const { options } = await post(root.dataset.optionsUrl);
      const credential = await webauthn.create(options);
      await post(root.dataset.registerUrl, { credential, name: form.elements.name.value.trim() });
      say(gettext("Passkey registered."), "info");
      window.location.reload();
    } catch (error) {
      const cancelled = error && error.name === "NotAllowedError";
      say(cancelled ? gettext("Cancelled: no passkey was registered.") : String(error.message || error), "error");
    } finally {
      button.disabled = false;
    }
  });
})();
