/* The profile page: enable or turn off push notifications on this device
 * (PushManager.subscribe with the server's VAPID public key; the subscription is stored by
 * POST /notify/push/subscriptions and forgotten by DELETE). */
(() => {
  "use strict";
  const root = document.getElementById("notify-profile");
  if (!root || !root.dataset.vapidPublicKey) return;
  const stateEl = document.getElementById("push-state");
  const enableBtn = document.getElementById("push-enable");
  const disableBtn = document.getElementById("push-disable");
  const url = root.dataset.subscriptionsUrl;
  const csrf = root.dataset.csrfToken;

  function keyBytes(base64url) {
    const padded = (base64url + "===".slice((base64url.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  }

  function send(method, body) {
    return fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: JSON.stringify(body),
    });
  }

  function show(subscribed, text) {
    stateEl.textContent = text;
    enableBtn.hidden = subscribed;
    disableBtn.hidden = !subscribed;
  }

  async function registration() {
    return navigator.serviceWorker.register("/sw.js", { scope: "/" }).then(() => navigator.serviceWorker.ready);
  }

  async function refresh() {
    if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
      stateEl.textContent = "This browser cannot receive push notifications (on iPhone: add Countersign to the Home Screen first).";
      return;
    }
    const reg = await registration();
    const sub = await reg.pushManager.getSubscription();
    if (sub) {
      await send("POST", sub.toJSON()); // keeps the server's copy current (e.g. after a new login)
      show(true, "This device receives push notifications.");
    } else {
      show(false, Notification.permission === "denied" ? "Notifications are blocked for this site in the browser's settings." : "This device does not receive push notifications.");
    }
  }

  enableBtn.addEventListener("click", async () => {
    try {
      if ((await Notification.requestPermission()) !== "granted") {
        show(false, "Notifications were not allowed.");
        return;
      }
      const reg = await registration();
      const sub = await reg.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: keyBytes(root.dataset.vapidPublicKey),
      });
      const response = await send("POST", sub.toJSON());
      show(response.ok, response.ok ? "This device receives push notifications." : "The server did not accept this device.");
    } catch (error) {
      show(false, `Push could not be enabled: ${error.message || error}`);
    }
  });

  disableBtn.addEventListener("click", async () => {
    const reg = await registration();
    const sub = await reg.pushManager.getSubscription();
    if (sub) {
      await send("DELETE", { endpoint: sub.endpoint });
      await sub.unsubscribe();
    }
    show(false, "This device does not receive push notifications.");
  });

  refresh().catch((error) => {
    stateEl.textContent = `Push is unavailable: ${error.message || error}`;
  });
})();
