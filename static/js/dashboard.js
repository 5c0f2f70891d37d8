/* Countersign staff dashboard: the live approval queue. Vanilla JS, no dependencies.
 *
 * The WebSocket only pushes: a snapshot of every pending request on each (re)connect, then
 * request_changed events. Decisions are POSTs with the CSRF token. The database is the truth:
 * a snapshot replaces what the page believed, so a dropped event never leaves a stale card.
 * Every value from the server is put in the page with textContent, never as HTML.
 * Words go through Django's JavaScript catalog (gettext, /jsi18n/), times and amounts through
 * static/js/format.js, so the card reads like the server's pages.
 */
(() => {
  "use strict";

  const root = document.getElementById("dashboard");
  if (!root) return;

  const queueEl = document.getElementById("queue");
  const countEl = document.getElementById("queue-count");
  const connEl = document.getElementById("conn");
  const recentWrap = document.getElementById("recent-wrap");
  const recentEl = document.getElementById("recent");
  const cardTemplate = document.getElementById("card-template");
  const soundBtn = document.getElementById("toggle-sound");
  const notifyBtn = document.getElementById("toggle-notify");
  const csrfToken = root.dataset.csrfToken;
  const baseTitle = document.title;

  const WARN_SECONDS = 20;
  const URGENT_SECONDS = 10;
  const STAMP_MS = 4000; // how long a decided card stays, saying who or what decided
  const RECENT_MAX = 8;

  // The catalog and the formats load before this script (base.html); the fallbacks keep the
  // queue working, in English and ISO times, if either failed to load.
  const gettext = window.gettext || ((text) => text);
  const interpolate =
    window.interpolate || ((text, values) => text.replace(/%\((\w+)\)s/g, (_, name) => String(values[name])));
  // Every word is a literal gettext("…") call, so that makemessages finds it; fmt fills in names.
  const fmt = (text, values) => interpolate(text, values, true);
  const format = (window.Countersign && window.Countersign.format) || {
    when: (iso) => (iso ? new Date(iso).toISOString().slice(11, 19) + " UTC" : ""),
    money: () => null,
  };
  const narrowScreen = window.matchMedia("(max-width: 480px)");

  const STATUS_LABELS = {
    pending: gettext("Pending"),
    approved: gettext("Approved"),
    denied: gettext("Denied"),
    expired: gettext("Expired"),
    cancelled: gettext("Cancelled"),
    escalated: gettext("Escalated"),
  };
  const ROLE_LABELS = { user: gettext("Guest"), assistant: gettext("Assistant"), system: gettext("System") };

  const cards = new Map(); // id → {el, req, deadlineAt, total, busy, done, claimStart}
  const closed = new Set(); // ids seen decided: a late "pending" event never brings one back
  let firstSnapshot = true;
  let coord = null; // claims, presence, kept text, the next step (static/js/claims.js)

  // ---------------------------------------------------------------- small helpers

  const userId = root.dataset.userId || "";
  const decideUrl = (id) => root.dataset.decideUrl.replace("/0/", `/${id}/`);
  const openedUrl = (id) => root.dataset.openedUrl.replace("/0/", `/${id}/`);
  const callUrl = (id, action) => `${root.dataset.callUrl.replace(/\/0$/, `/${id}`)}/${action}`;

  // The audit trail records who had a request in front of them: once per card and page, when
  // the card has been shown on a visible page (a hidden tab has shown nobody anything).
  const reported = new Set();
  function reportOpened() {
    if (document.visibilityState !== "visible") return;
    for (const [id, entry] of cards) {
      if (reported.has(id) || entry.done || entry.req.status !== "pending") continue;
      reported.add(id);
      fetch(openedUrl(id), {
        method: "POST",
        headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
        credentials: "same-origin",
      }).catch(() => reported.delete(id));
    }
  }
  document.addEventListener("visibilitychange", reportOpened);
  const $ = (el, sel) => el.querySelector(sel);
  const setText = (el, sel, text) => {
    $(el, sel).textContent = text;
  };
  const make = (tag, className, text) => {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  };

  function plainWords(name) {
    const words = String(name)
      .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
      .replace(/[_-]+/g, " ")
      .trim()
      .toLowerCase();
    return words ? words[0].toUpperCase() + words.slice(1) : String(name);
  }

  function formatSeconds(left) {
    const s = Math.ceil(left);
    if (s < 60) return `${s} s`;
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  const statusLabel = (req) => STATUS_LABELS[req.status] || req.status_label || req.status;


  // ---------------------------------------------------------------- cards

  function outcome(req) {
    const by = req.decided_by_label;
    // Approved with changes: a denial upstream (call again with the new arguments), a yes here.
    if (req.changes) return fmt(gettext("Approved with changes by %(name)s"), { name: by });
    switch (req.status) {
      case "approved":
        return fmt(gettext("Approved by %(name)s"), { name: by });
      case "denied":
        return fmt(gettext("Denied by %(name)s"), { name: by });
      case "expired":
        return gettext("Denied by the deadline");
      case "cancelled":
        return gettext("Cancelled: the session ended");
      default:
        return statusLabel(req);
    }
  }

  function renderMeta(container, metadata) {
    container.replaceChildren();
    for (const [key, value] of Object.entries(metadata || {})) {
      const chip = make("span", "chip");
      chip.append(make("b", "", plainWords(key)), document.createTextNode(` ${value}`));
      container.append(chip);
    }
  }

  function renderValue(value) {
    if (value === null || value === undefined) return make("span", "muted", gettext("none"));
    if (typeof value === "object") return make("pre", "", JSON.stringify(value, null, 2));
    if (typeof value === "boolean") return make("span", "", value ? gettext("yes") : gettext("no"));
    return make("span", "", String(value));
  }

  // An amount with a currency beside it ({"amount": 20, "currency": "EUR"}) is one value on the
  // card, "€20.00"; the arguments exactly as sent stay below.
  const AMOUNT_KEY = /(^|_)(amount|price|total|cost|fee)$/i;

  function moneyArgs(args) {
    const currency = args.currency;
    const shown = new Map();
    for (const [key, value] of Object.entries(args)) {
      if (!AMOUNT_KEY.test(key)) continue;
      const text = format.money(value, currency);
      if (text) shown.set(key, text);
    }
    return shown;
  }

  function renderArgs(el, req) {
    const dl = $(el, ".args");
    dl.replaceChildren();
    const args = req.arguments;
    if (args === null) {
      dl.append(make("dt", "", gettext("Arguments")), make("dd", "warn-text", gettext("Not valid JSON: see them exactly as sent below.")));
      $(el, ".raw").open = true;
    } else if (typeof args === "object" && !Array.isArray(args)) {
      const entries = Object.entries(args);
      if (!entries.length) dl.append(make("dt", "", gettext("Arguments")), make("dd", "muted", gettext("none")));
      const amounts = moneyArgs(args);
      for (const [key, value] of entries) {
        if (key === "currency" && amounts.size) continue;
        const dd = make("dd", amounts.has(key) ? "amount" : "");
        dd.append(amounts.has(key) ? make("span", "", amounts.get(key)) : renderValue(value));
        dl.append(make("dt", "", plainWords(key)), dd);
      }
    } else {
      const dd = make("dd");
      dd.append(renderValue(args));
      dl.append(make("dt", "", gettext("Arguments")), dd);
    }
    setText(el, ".args-raw", req.arguments_raw);
  }

  function renderConversation(el, lines) {
    const ol = $(el, ".convo");
    ol.replaceChildren();
    setText(el, ".convo-count", lines.length ? `(${lines.length})` : "");
    if (!lines.length) {
      ol.append(make("li", "muted", gettext("Nothing said yet that the console heard.")));
      return;
    }
    for (const line of lines) {
      const li = make("li", `line role-${line.role}`);
      const role = ROLE_LABELS[line.role] || line.role_label || plainWords(line.role);
      li.append(make("span", "role", role), make("span", "said", line.text));
      ol.append(li);
    }
    ol.scrollTop = ol.scrollHeight; // the newest line is the one that led to the call
  }

  function fillCard(entry, req) {
    const el = entry.el;
    entry.req = req;
    const label = req.session.label || fmt(gettext("Session %(id)s"), { id: req.session.id });
    setText(el, ".session-label", label);
    // Where a request came from when it is not a guest's session: another gateway or program.
    setText(el, ".session-origin", req.session.kind === "api" ? gettext("via the approval API") : "");
    renderMeta($(el, ".session-meta"), req.session.metadata);
    const asked = $(el, ".asked");
    asked.dateTime = req.created_at;
    asked.textContent = fmt(gettext("asked %(time)s"), { time: format.when(req.created_at) });
    asked.title = format.when(req.created_at, "full");
    setText(el, ".tool", req.tool_title);
    const about = req.server_description ? ` (${req.server_description})` : "";
    setText(el, ".server", fmt(gettext("%(server)s server%(about)s · %(tool)s"), { server: req.server_title, about, tool: req.tool_name }));
    renderArgs(el, req);
    renderConversation(el, req.conversation);
    renderCallAndRun(el, req);
    renderPolicy(el, req);
    applyDuties(el, req);
    // [decide-rules] the notes' fields and what the rule requires (static/js/decide_rules.js)
    if (window.countersignRules) window.countersignRules.render(el, req);
    // [grants] approve with changes, the grant's scope, the turn (static/js/grants.js)
    if (window.countersignGrants) window.countersignGrants.render(el, req);
    // [stop] the session's Stop box, for people who may stop sessions (static/js/stop.js)
    if (window.countersignStop) window.countersignStop.render(el, req);
    el.setAttribute("aria-label", fmt(gettext("%(tool)s, for %(session)s"), { tool: req.tool_title, session: label }));
    if (req.status === "pending") {
      // Local clock + the server's "seconds left": immune to a skewed clock on this device.
      entry.deadlineAt = performance.now() + req.seconds_left * 1000;
      entry.total = req.timeout_seconds || 60;
    }
    coord.renderClaim(entry);
  }

  // Who may decide (the policy's groups), the rule that routed the request, and how far its
  // quorum is ("1 of 2 managers"). Someone who already approved cannot approve again.
  function renderPolicy(el, req) {
    const policy = req.policy || {};
    setText(el, ".rule", policy.rule ? fmt(gettext("Rule %(rule)s"), { rule: policy.rule }) : gettext("Default policy"));
    const groups = (policy.groups || []).join(gettext(" or "));
    const escalated = policy.stage > 0 ? gettext(" · escalated") : "";
    const audience = groups ? fmt(gettext("for %(groups)s"), { groups }) : gettext("any staff member");
    setText(el, ".who-decides", ` · ${audience}${escalated}`);
    const votes = policy.votes || [];
    let quorum = "";
    if (policy.quorum > 1) {
      const names = votes.map((v) => v.label).join(", ");
      const progress = quorumLabel(policy);
      quorum = names
        ? fmt(gettext(" · %(progress)s approved (%(names)s)"), { progress, names })
        : fmt(gettext(" · %(progress)s approved"), { progress });
    }
    setText(el, ".quorum", quorum);
    const mine = votes.some((v) => String(v.user_id) === userId);
    const approveBtn = $(el, ".btn.approve");
    if (req.status === "pending") {
      approveBtn.disabled = mine;
      approveBtn.title = mine ? gettext("You approved already: another person must approve too.") : "";
    }
  }

  // "1 of 2 managers": the quorum's progress, as the server's quorum_label says it in English.
  function quorumLabel(policy) {
    const who = (policy.groups || []).join(gettext(" or ")) || gettext("staff");
    return fmt(gettext("%(votes)s of %(quorum)s %(who)s"), { votes: (policy.votes || []).length, quorum: policy.quorum, who });
  }

  // A phone or browser call (sideband) gets its state and the staff's call controls; a text
  // agent run (Responses API) its state and output. Values go in as text, never as HTML.
  function renderCallAndRun(el, req) {
    const call = req.session.call;
    const callBox = $(el, ".call-box");
    callBox.hidden = !call;
    if (call) {
      const kind = call.kind === "sip" ? gettext("Phone call") : gettext("Browser call");
      const parties = [call.from && fmt(gettext("from %(from)s"), { from: call.from }), call.to && fmt(gettext("to %(to)s"), { to: call.to })]
        .filter(Boolean)
        .join(" ");
      setText(el, ".call-line", `${kind} ${parties} · ${call.status_label}`);
      $(el, ".hangup").hidden = !call.can_hang_up;
      $(el, ".transfer").hidden = !call.can_transfer;
      $(el, ".transfer-to").hidden = !call.can_transfer;
      callBox.dataset.callId = String(call.id);
    }
    const run = req.session.run;
    const runBox = $(el, ".run-box");
    runBox.hidden = !run;
    if (run) {
      setText(el, ".run-line", fmt(gettext("Text agent run · %(state)s"), { state: run.state_label }));
      setText(el, ".run-output", run.error || run.output_text || "");
    }
  }

  async function callAction(el, action) {
    const id = $(el, ".call-box").dataset.callId;
    const body = new URLSearchParams();
    if (action === "refer") {
      const target = $(el, ".transfer-to").value.trim();
      if (!target) {
        showMessage(el, gettext("Say where to transfer the call (tel: or sip:)."), "error");
        return;
      }
      body.set("target_uri", target);
    }
    let response;
    try {
      response = await fetch(callUrl(id, action), {
        method: "POST",
        headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
        credentials: "same-origin",
        body,
      });
    } catch {
      showMessage(el, gettext("Countersign could not be reached. Try again."), "error");
      return;
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const failed = action === "refer" ? gettext("The call could not be transferred.") : gettext("The call could not be hung up.");
      showMessage(el, data.error || failed, "error");
      return;
    }
    showMessage(el, action === "refer" ? gettext("Transfer requested.") : gettext("Call ended."), "info");
  }

  function buildCard(req) {
    const entry = buildCardElement(req);
    coord.setup(entry);
    return entry;
  }

  function buildCardElement(req) {
    const el = cardTemplate.content.firstElementChild.cloneNode(true);
    el.dataset.id = String(req.id);
    for (const button of el.querySelectorAll("button[data-decision]")) {
      button.addEventListener("click", () => decide(req.id, button.dataset.decision));
    }
    $(el, "form.decide").addEventListener("submit", (event) => event.preventDefault());
    $(el, ".call-actions").addEventListener("submit", (event) => event.preventDefault());
    $(el, ".hangup").addEventListener("click", () => callAction(el, "hangup"));
    $(el, ".transfer").addEventListener("click", () => callAction(el, "refer"));
    // On a phone the call (tool and arguments) comes first; the conversation opens on a tap.
    $(el, ".convo-wrap").open = !narrowScreen.matches;
    return { el, req, deadlineAt: 0, total: 60, busy: false, done: false };
  }

  function placeCard(entry) {
    // Most urgent first: before the first card whose deadline is later.
    const deadline = entry.req.deadline;
    for (const other of queueEl.children) {
      const o = cards.get(Number(other.dataset.id));
      if (o && o !== entry && !o.done && o.req.deadline > deadline) {
        queueEl.insertBefore(entry.el, other);
        return;
      }
    }
    queueEl.append(entry.el);
  }

  function upsert(req) {
    let entry = cards.get(req.id);
    const isNew = !entry;
    if (isNew) entry = buildCard(req);
    fillCard(entry, req);
    if (isNew) {
      cards.set(req.id, entry);
      placeCard(entry);
    }
    updateCount();
    tick();
    reportOpened();
    return isNew;
  }

  function showMessage(el, text, kind) {
    const msg = $(el, ".msg");
    msg.textContent = text || "";
    msg.className = `msg ${kind || ""}`;
  }

  // `mine`: this page's own decision (its answer), so a reason typed here went with it.
  function closeCard(req, message, { mine = false } = {}) {
    closed.add(req.id);
    rememberRecent(req);
    const entry = cards.get(req.id);
    if (!entry) return;
    if (entry.done) {
      if (message) showMessage(entry.el, message, "info");
      return;
    }
    const el = entry.el;
    const kept = coord.keepTyped(entry, req, { mine: mine || entry.busy, escalated: false });
    entry.done = true;
    entry.req = req;
    coord.renderClaim(entry);
    el.classList.remove("warn", "urgent", "overdue");
    el.classList.add("closed", `is-${req.changes ? "approved" : req.status}`);
    for (const control of el.querySelectorAll("button, input, textarea, select")) control.disabled = true;
    for (const button of el.querySelectorAll(".kept button")) button.disabled = false; // copy, dismiss
    setText(el, ".stamp-title", outcome(req));
    // Approved with changes: what was approved instead, not the instruction the model was given.
    const said = req.changes ? JSON.stringify(req.changes.new) : req.reason;
    setText(el, ".stamp-reason", said && req.status !== "cancelled" ? said : "");
    $(el, ".stamp").hidden = false;
    showMessage(el, message || "", message ? "info" : "");
    updateCount();
    leaveLater(entry, kept);
  }

  // A stamped card goes after STAMP_MS; one that keeps what the person was typing stays until
  // they copied it or dismissed it (the text is in "Just decided" too, until the page reloads).
  function leaveLater(entry, kept) {
    const id = Number(entry.el.dataset.id);
    const go = () => {
      entry.el.classList.add("leaving");
      setTimeout(() => removeCard(id), 300);
    };
    if (kept) $(entry.el, ".dismiss-kept").addEventListener("click", go, { once: true });
    else setTimeout(go, STAMP_MS);
  }

  function removeCard(id) {
    const entry = cards.get(id);
    if (!entry) return;
    const hadFocus = entry.el.contains(document.activeElement);
    entry.el.remove();
    cards.delete(id);
    if (hadFocus) queueEl.focus({ preventScroll: true });
    updateCount();
  }

  function pendingCount() {
    let n = 0;
    for (const entry of cards.values()) if (!entry.done) n += 1;
    return n;
  }

  function updateCount() {
    const n = pendingCount();
    countEl.textContent = String(n);
    root.classList.toggle("is-empty", cards.size === 0);
    document.title = n ? `(${n}) ${baseTitle}` : baseTitle;
  }

  function rememberRecent(req, text) {
    let li = recentEl.querySelector(`li[data-id="${req.id}"]`);
    if (!li) {
      li = make("li");
      li.dataset.id = String(req.id);
      recentEl.prepend(li);
      while (recentEl.children.length > RECENT_MAX) recentEl.lastElementChild.remove();
    }
    li.className = `is-${req.status}`;
    li.replaceChildren(
      make("span", `badge is-${req.status}`, statusLabel(req)),
      make("span", "recent-tool", `${req.tool_title} · ${req.session.label}`),
      make("span", "recent-by", text || outcome(req)),
      make("time", "muted", format.when(req.decided_at)),
    );
    li.lastElementChild.dateTime = req.decided_at || "";
    if (req.call && req.call.recorded) {
      li.append(make("span", req.call.error ? "bad-text" : "ok-text", req.call.error ? gettext("tool failed") : gettext("tool ran")));
    }
    recentWrap.hidden = false;
  }

  // ---------------------------------------------------------------- countdown

  function tick() {
    const now = performance.now();
    for (const entry of cards.values()) {
      if (entry.done) continue;
      const left = Math.max(0, (entry.deadlineAt - now) / 1000);
      const el = entry.el;
      setText(el, ".secs", left > 0 ? formatSeconds(left) : "0 s");
      coord.tickClaim(entry, now);
      coord.tickNextStep(entry, left);
      $(el, ".bar span").style.width = `${Math.min(100, (left / entry.total) * 100)}%`;
      el.classList.toggle("warn", left <= WARN_SECONDS && left > URGENT_SECONDS);
      el.classList.toggle("urgent", left <= URGENT_SECONDS);
      if (left <= 0 && !el.classList.contains("overdue")) {
        // The server decides (the deadline task and its sweep); the card waits for its event.
        el.classList.add("overdue");
        showMessage(el, gettext("Time is up: the deadline is denying this request…"), "warn");
      }
    }
  }
  setInterval(tick, 250);

  // ---------------------------------------------------------------- deciding

  async function decide(id, decision, viaKey = false) {
    const entry = cards.get(id);
    if (!entry || entry.busy) return;
    const el = entry.el;
    if (entry.done) {
      showMessage(el, fmt(gettext("Already closed: %(outcome)s."), { outcome: outcome(entry.req) }), "info");
      return;
    }
    if (dutyNote(entry.req)) return; // not theirs to decide (A/D keys too): the card says why
    entry.busy = true;
    // [decide-rules] confirm (always after a key), required notes, passkey step-up: the extra
    // fields to send, or null when the person cancelled or something is missing (decide_rules.js).
    const rules = window.countersignRules;
    const extra = rules ? await rules.prepare(el, entry.req, decision, { viaKey }) : {};
    if (extra === null || entry.done) {
      entry.busy = false;
      return;
    }
    el.classList.add("busy");
    showMessage(el, decision === "approve" ? gettext("Approving…") : gettext("Denying…"), "");
    const grants = window.countersignGrants ? window.countersignGrants.fields(el, decision) : {};
    const body = new URLSearchParams({ decision, reason: $(el, ".reason").value.trim(), ...extra, ...grants });
    let response;
    let data = {};
    try {
      response = await fetch(decideUrl(id), {
        method: "POST",
        headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
        body,
        credentials: "same-origin",
      });
      data = await response.json().catch(() => ({}));
    } catch {
      entry.busy = false;
      el.classList.remove("busy");
      showMessage(el, gettext("Could not reach Countersign. Check the connection and try again."), "error");
      return;
    }
    entry.busy = false;
    el.classList.remove("busy");
    if (response.ok && data.request && data.request.status === "pending") {
      // Counted toward the quorum: the request waits for another approver.
      upsert(data.request);
      const progress = quorumLabel(data.request.policy);
      showMessage(el, fmt(gettext("Your approval is counted: %(progress)s. Another person must approve too."), { progress }), "info");
    } else if (response.ok) {
      closeCard(data.request, "", { mine: true });
    } else if (response.status === 409) {
      // Someone or something decided first: say who, and show the card as it really is.
      if (data.request) closeCard(data.request, data.error);
      else showMessage(el, data.error, "error");
    } else if (response.status === 404) {
      showMessage(el, data.error || gettext("This request no longer exists."), "error");
      setTimeout(() => removeCard(id), STAMP_MS);
    } else if (response.status === 403) {
      showMessage(el, data.error || gettext("The security check failed: reload the page and try again."), "error");
    } else if (response.status === 400) {
      showMessage(el, data.error || gettext("Check the reason and try again."), "error");
      $(el, ".reason").focus();
    } else {
      showMessage(el, fmt(gettext("Something went wrong (%(status)s). Try again."), { status: response.status }), "error");
    }
  }

  // ---------------------------------------------------------------- sound and notifications

  // static/js/alerts.js: the chime and browser notifications, with their toggles.
  const alertsModule = window.Countersign && window.Countersign.alerts;
  const alerts = alertsModule ? alertsModule.init({ soundBtn, notifyBtn, formatSeconds, cards }) : { announce() {} };
  const announce = (requests) => alerts.announce(requests);

  // ---------------------------------------------------------------- keyboard

  function visibleCards() {
    return [...queueEl.children].filter((el) => !el.classList.contains("leaving"));
  }

  function moveFocus(current, step) {
    const list = visibleCards();
    if (!list.length) return;
    const index = current ? list.indexOf(current) : -1;
    const next = list[Math.max(0, Math.min(list.length - 1, index + step))] || list[0];
    next.focus();
    next.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }

  document.addEventListener("keydown", (event) => {
    // A held key must not decide a second request; modifiers belong to the browser.
    if (event.defaultPrevented || event.repeat || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof Element && target.closest("input, textarea, select, [contenteditable]")) {
      if (event.key === "Escape") {
        const card = target.closest(".card");
        if (card) card.focus();
      }
      return;
    }
    const active = document.activeElement;
    const card = active instanceof Element ? active.closest(".card") : null;
    const key = event.key.toLowerCase();
    if ((key === "a" || key === "d") && card) {
      event.preventDefault();
      decide(Number(card.dataset.id), key === "a" ? "approve" : "deny", true); // [decide-rules] via a key: confirm
    } else if (key === "r" && card && !card.classList.contains("closed")) {
      event.preventDefault();
      $(card, ".reason").focus();
    } else if (key === "j" || (card && event.key === "ArrowDown")) {
      event.preventDefault();
      moveFocus(card, 1);
    } else if (key === "k" || (card && event.key === "ArrowUp")) {
      event.preventDefault();
      moveFocus(card, -1);
    }
  });

  // ---------------------------------------------------------------- duties (issue 13)
  // Who may not decide, whatever the policy says (approvals/services/decisions.py refuses them
  // anyway): a compliance reviewer (the page's data-review-only, or the snapshot's
  // may_decide: false) and whoever started the card's session (its started_by). Their cards
  // show why instead of the buttons. And a socket the server closed because the login ended
  // (4401 logged out or expired, 4403 no longer staff) is not reopened: the page says so.

  let reviewOnly = root.dataset.reviewOnly === "true";
  let reviewWhy = $(cardTemplate.content, ".duty-note").textContent.trim();
  let ended = false;

  function noteViewer(snapshot) {
    if (snapshot.may_decide !== false) return;
    reviewOnly = true;
    reviewWhy = snapshot.why || reviewWhy;
  }

  function dutyNote(req) {
    if (reviewOnly) return reviewWhy;
    if (req.started_by && String(req.started_by.id) === userId) {
      const groups = ((req.policy || {}).groups || []).join(" or ");
      return groups ? root.dataset.startedNote.replace("{groups}", groups) : root.dataset.startedNoteAny;
    }
    return "";
  }

  function applyDuties(el, req) {
    const note = req.status === "pending" ? dutyNote(req) : "";
    el.classList.toggle("no-decide", Boolean(note));
    $(el, "form.decide").hidden = reviewOnly || Boolean(note);
    const noteEl = $(el, ".duty-note");
    noteEl.hidden = !note;
    noteEl.textContent = note;
  }

  function sessionEnded(code) {
    if (code !== 4401 && code !== 4403) return false;
    ended = true;
    clearTimeout(retryTimer);
    root.classList.remove("is-offline");
    setConnection("offline", "Session ended");
    document.getElementById("ended-note").hidden = false;
    return true;
  }

  // ---------------------------------------------------------------- the socket

  function onSnapshot(requests) {
    const pendingIds = new Set(requests.map((req) => req.id));
    // Pending cards the database no longer lists were decided while we were not listening.
    for (const [id, entry] of cards) {
      if (!entry.done && !pendingIds.has(id)) removeCard(id);
    }
    const fresh = [];
    for (const req of requests) {
      closed.delete(req.id); // the snapshot is the truth
      if (upsert(req)) fresh.push(req);
    }
    for (const req of requests) placeCard(cards.get(req.id));
    // The first snapshot is what was already there; later ones may hold requests that
    // arrived while we were offline: those are news.
    if (!firstSnapshot) announce(fresh);
    firstSnapshot = false;
    root.classList.remove("is-loading", "is-offline");
    updateCount();
  }

  function onChanged(req) {
    if (req.status !== "pending") {
      closeCard(req);
      return;
    }
    if (closed.has(req.id)) return; // an older event overtaken by the decision
    if (upsert(req)) announce([req]);
  }

  // The request escalated away from this person's group: the card is stamped "Escalated to
  // managers" and listed under "Just decided" (it is in their history too), with what they
  // were typing kept.
  function onEscalated(req) {
    const entry = cards.get(req.id);
    if (!entry || entry.done) return;
    const el = entry.el;
    const groups = (req.policy && req.policy.groups) || [];
    const text = fmt(gettext("Escalated to %(groups)s"), { groups: groups.join(gettext(" or ")) || gettext("any staff member") });
    const kept = coord.keepTyped(entry, req, { mine: false, escalated: true });
    entry.done = true;
    entry.req = req;
    coord.renderClaim(entry);
    el.classList.remove("warn", "urgent", "overdue");
    el.classList.add("closed", "is-escalated");
    for (const control of el.querySelectorAll("button, input")) control.disabled = true;
    for (const button of el.querySelectorAll(".kept button")) button.disabled = false; // copy, dismiss
    setText(el, ".stamp-title", text);
    setText(el, ".stamp-reason", "");
    $(el, ".stamp").hidden = false;
    showMessage(el, "", "");
    rememberRecent({ ...req, status: "escalated", decided_at: new Date().toISOString() }, text);
    updateCount();
    leaveLater(entry, kept);
  }

  // The request left this person's queue (escalated to a group they are not in).
  function onRemoved(id) {
    const entry = cards.get(id);
    if (!entry || entry.done) return;
    entry.done = true;
    for (const control of entry.el.querySelectorAll("button, input")) control.disabled = true;
    showMessage(entry.el, gettext("Escalated to another group: no longer yours to decide."), "info");
    updateCount();
    setTimeout(() => removeCard(id), STAMP_MS);
  }

  let socket = null;
  let attempts = 0;
  let retryTimer = null;

  function setConnection(state, text) {
    connEl.className = `conn is-${state}`;
    $(connEl, ".conn-text").textContent = text;
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    setConnection("connecting", attempts ? gettext("Reconnecting…") : gettext("Connecting…"));
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}${root.dataset.wsPath}`);
    socket = ws;
    ws.addEventListener("open", () => {
      attempts = 0;
      setConnection("live", gettext("Live"));
    });
    ws.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === "snapshot") {
        noteViewer(message);
        onSnapshot(message.requests);
        if (window.countersignGrants) window.countersignGrants.refresh(); // what changed while away
      } else if (message.type === "request_changed") onChanged(message.request);
      else if (message.type === "request_removed") onRemoved(message.id);
      else if (message.type === "request_escalated") onEscalated(message.request);
      else if (message.type === "presence") coord.renderPresence(message.online);
      else if (message.type === "grants" && window.countersignGrants) window.countersignGrants.refresh();
    });
    ws.addEventListener("close", (event) => {
      if (socket !== ws) return;
      socket = null;
      if (sessionEnded(event.code)) return;
      root.classList.add("is-offline");
      // Exponential backoff with jitter, so a restarted server is not hit by every tab at once.
      const delay = Math.min(15000, 1000 * 2 ** attempts) * (0.75 + Math.random() * 0.5);
      attempts += 1;
      const hint = attempts >= 4 ? gettext(" (if this persists, reload: you may need to log in again)") : "";
      setConnection("offline", fmt(gettext("Offline, retrying in %(seconds)s s%(hint)s"), { seconds: Math.round(delay / 1000), hint }));
      retryTimer = setTimeout(connect, delay);
    });
  }

  // Back in view or back online: reconnect now rather than at the end of a long backoff.
  const reconnectNow = () => {
    if (!socket && !ended && document.visibilityState === "visible") {
      attempts = 0;
      connect();
    }
  };
  document.addEventListener("visibilitychange", reconnectNow);
  window.addEventListener("online", reconnectNow);

  const noCoord = { setup() {}, renderClaim() {}, tickClaim() {}, tickNextStep() {}, keepTyped: () => false, renderPresence() {} };
  const coordModule = window.Countersign && window.Countersign.coord;
  coord = coordModule
    ? coordModule.init({ root, csrfToken, userId, $, setText, make, formatSeconds, showMessage, cards })
    : noCoord; // claims.js failed to load: the queue still works without them

  queueEl.tabIndex = -1;
  connect();
})();
