/* Countersign service worker (served at /sw.js so that its scope is the whole app).
 *
 * Shows the push notification of a request (notify/push.py builds the payload), opens its card
 * when clicked, and on Approve/Deny posts the decision to the dashboard's own endpoint with the
 * browser's live login: the CSRF token comes from /notify/csrf. Without a live staff login the
 * card opens instead, so the person logs in and decides there.
 */
"use strict";

const ICON = "/static/icons/icon-192.png";
const BADGE = "/static/icons/badge-96.png";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let data;
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { title: "Countersign", body: event.data.text() };
  }
  const options = {
    body: data.body || "",
    tag: data.tag || (data.request_id ? `request-${data.request_id}` : undefined),
    renotify: true,
    requireInteraction: true,
    icon: ICON,
    badge: BADGE,
    data: { url: data.url || "/", decideUrl: data.decide_url || "", requestId: data.request_id },
    actions: Array.isArray(data.actions) ? data.actions : [],
  };
  event.waitUntil(self.registration.showNotification(data.title || "Countersign", options));
});

async function openCard(url) {
  const target = new URL(url || "/", self.location.origin).href;
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const client of windows) {
    if (new URL(client.url).origin === self.location.origin && "focus" in client) {
      await client.focus();
      return client.navigate ? client.navigate(target) : client;
    }
  }
  return self.clients.openWindow(target);
}

async function tell(title, body, data) {
  await self.registration.showNotification(title, { body, tag: `result-${data.requestId}`, icon: ICON, data });
}

async function decide(data, decision) {
  let who;
  try {
    const response = await fetch("/notify/csrf", { credentials: "include", cache: "no-store" });
    who = await response.json();
  } catch {
    return openCard(data.url);
  }
  if (!who.authenticated || !who.staff || !data.decideUrl) return openCard(data.url);
  try {
    const response = await fetch(data.decideUrl, {
      method: "POST",
      credentials: "include",
      headers: {
        "X-CSRFToken": who.csrf_token,
        Accept: "application/json",
        "Content-Type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ decision, reason: "" }),
    });
    const answer = await response.json().catch(() => ({}));
    if (response.ok) {
      const status = answer.request && answer.request.status;
      const done = status === "approved" ? "Approved" : status === "denied" ? "Denied" : "Approval counted";
      return tell(done, "Your decision is recorded.", data);
    }
    return tell("Not decided", answer.error || "The decision was not accepted.", data);
  } catch {
    return openCard(data.url);
  }
}

self.addEventListener("notificationclick", (event) => {
  const notification = event.notification;
  notification.close();
  const data = notification.data || {};
  if (event.action === "approve" || event.action === "deny") {
    event.waitUntil(decide(data, event.action));
  } else {
    event.waitUntil(openCard(data.url));
  }
});
