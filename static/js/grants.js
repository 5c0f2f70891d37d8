/* Decisions beyond yes and no on the dashboard (issue 14; docs/screens.md "Beyond yes and no"):
 *  - approve with changes: the card's "Approve with changes…" opens the arguments as JSON; once
 *    edited, Approve sends them (the server checks them against the tool's schema);
 *  - scope: "this call", "this tool for this session", "this tool for this guest for N minutes",
 *    optionally only with some of this call's arguments fixed (what the rule allows: req.grants);
 *  - one turn: requests the model asked together are listed above the queue with "Approve all",
 *    which asks to confirm, then decides each through the server and says which could not be;
 *  - the grants panel: every live grant, with Revoke.
 *
 * dashboard.js calls, for each card: countersignGrants.render(card, req) after filling it,
 * countersignGrants.fields(card, decision) for the extra form fields of a decision, and
 * countersignGrants.refresh() when the socket says the grants changed. Values from the server
 * go in with textContent only.
 */
(() => {
  "use strict";

  const root = document.getElementById("dashboard");
  if (!root) return;
  const gettext = window.gettext || ((text) => text);
  const interpolate =
    window.interpolate || ((text, values) => text.replace(/%\((\w+)\)s/g, (_, name) => String(values[name])));
  const fmt = (text, values) => interpolate(text, values, true);
  const csrfToken = root.dataset.csrfToken;
  const $ = (el, sel) => el.querySelector(sel);
  const make = (tag, className, text) => {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const post = async (url, fields) => {
    const response = await fetch(url, {
      method: "POST",
      headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
      body: new URLSearchParams(fields),
      credentials: "same-origin",
    });
    return { response, data: await response.json().catch(() => ({})) };
  };

  const reqs = new Map(); // id → the card's request, as last rendered
  const scalar = (value) => value === null || ["string", "number", "boolean"].includes(typeof value);

  // ---------------------------------------------------------------- one card

  function render(card, req) {
    reqs.set(req.id, req);
    const box = $(card, ".grant-box");
    const edit = $(card, ".edit-box");
    if (!box || !edit) return;
    const pending = req.status === "pending";
    const options = req.grants || { scopes: [], max_minutes: 0 };
    const quorum = req.policy && req.policy.quorum > 1;
    // A two-person rule decides one call at a time: no grants, no changes (the server agrees).
    box.hidden = !pending || quorum || !options.scopes.length;
    edit.hidden = !pending || quorum || !req.arguments || typeof req.arguments !== "object" || Array.isArray(req.arguments);
    if (!card.dataset.grantsReady) {
      card.dataset.grantsReady = "1";
      setUp(card, req, options);
    }
    renderTurn();
  }

  function setUp(card, req, options) {
    const select = $(card, ".scope");
    for (const option of select.options) {
      if (option.value !== "call") option.hidden = option.disabled = !options.scopes.includes(option.value);
    }
    const minutes = $(card, ".minutes");
    minutes.max = String(options.max_minutes || 1);
    minutes.value = String(Math.min(30, options.max_minutes || 1));
    const bind = $(card, ".bind");
    const args = req.arguments && typeof req.arguments === "object" ? req.arguments : {};
    for (const [key, value] of Object.entries(args)) {
      if (!scalar(value)) continue;
      const label = make("label", "bind-arg");
      const box = make("input");
      box.type = "checkbox";
      box.value = key;
      label.append(box, document.createTextNode(` ${key} = ${JSON.stringify(value)}`));
      bind.append(label);
    }
    const sync = () => {
      const scope = select.value;
      $(card, ".minutes-label").hidden = scope !== "guest";
      bind.hidden = scope === "call" || !bind.querySelector("input");
      syncApprove(card);
    };
    select.addEventListener("change", sync);
    sync();
    const area = $(card, ".edit-args");
    area.value = JSON.stringify(args, null, 2);
    area.dataset.original = JSON.stringify(args);
    area.addEventListener("input", () => syncApprove(card));
    $(card, ".edit-box").addEventListener("toggle", () => syncApprove(card));
    $(card, ".approve-changes").addEventListener("click", () => $(card, ".approve").click());
  }

  function edited(card) {
    const edit = $(card, ".edit-box");
    if (!edit || edit.hidden || !edit.open) return null;
    const area = $(card, ".edit-args");
    try {
      if (JSON.stringify(JSON.parse(area.value)) === area.dataset.original) return null;
    } catch {
      return area.value; // not JSON: the server says so, in words
    }
    return area.value;
  }

  function syncApprove(card) {
    const approve = $(card, ".approve");
    const changed = edited(card) !== null;
    approve.textContent = changed ? gettext("Approve with changes") : gettext("Approve");
    card.classList.toggle("is-editing", changed);
    const scope = $(card, ".scope");
    if (changed) scope.value = "call"; // changes cover the one changed call
    scope.disabled = changed;
  }

  // The extra fields of a decision from this card: the edited arguments, or the grant asked.
  function fields(card, decision) {
    if (decision !== "approve") return {};
    const changes = edited(card);
    if (changes !== null) return { arguments: changes };
    const box = $(card, ".grant-box");
    if (!box || box.hidden) return {};
    const scope = $(card, ".scope").value;
    if (scope === "call") return {};
    const out = { scope };
    if (scope === "guest") out.minutes = $(card, ".minutes").value;
    const req = reqs.get(Number(card.dataset.id));
    const bound = {};
    for (const input of card.querySelectorAll(".bind input:checked")) bound[input.value] = req.arguments[input.value];
    if (Object.keys(bound).length) out.constraints = JSON.stringify(bound);
    return out;
  }

  // ---------------------------------------------------------------- one turn, approve all

  const turnsEl = document.getElementById("turns");

  function pendingTurns() {
    const groups = new Map();
    for (const card of document.querySelectorAll("#queue .card:not(.closed)")) {
      const req = reqs.get(Number(card.dataset.id));
      if (!req || req.status !== "pending" || !req.turn) continue;
      if (!groups.has(req.turn)) groups.set(req.turn, []);
      groups.get(req.turn).push(req);
    }
    return [...groups].filter(([, list]) => list.length > 1);
  }

  let turnTimer = null;
  function renderTurn() {
    clearTimeout(turnTimer);
    turnTimer = setTimeout(drawTurns, 50); // once per burst of cards
  }

  function drawTurns() {
    if (!turnsEl) return;
    const turns = pendingTurns();
    const shown = new Set(turns.map(([turn]) => turn));
    for (const el of [...turnsEl.children]) {
      if (!shown.has(el.dataset.turn) && !el.classList.contains("is-done")) el.remove();
    }
    for (const card of document.querySelectorAll("#queue .card")) {
      const req = reqs.get(Number(card.dataset.id));
      card.classList.toggle("in-turn", Boolean(req && shown.has(req.turn)));
    }
    for (const [turn, list] of turns) {
      let el = [...turnsEl.children].find((child) => child.dataset.turn === turn);
      if (!el) {
        el = make("div", "turn");
        el.dataset.turn = turn;
        el.append(make("p", "turn-title"), make("ul", "turn-list"), make("div", "turn-actions"), make("p", "turn-msg"));
        turnsEl.append(el);
      }
      if (el.classList.contains("is-busy")) continue;
      el.dataset.ids = list.map((req) => req.id).join(",");
      $(el, ".turn-title").textContent = fmt(gettext("%(count)s requests from one turn of %(session)s"), {
        count: list.length,
        session: list[0].session.label,
      });
      const ul = $(el, ".turn-list");
      ul.replaceChildren(...list.map((req) => make("li", "", `${req.tool_title}: ${req.arguments_raw}`)));
      if (!$(el, ".turn-actions").childElementCount) askButton(el);
    }
    turnsEl.hidden = !turnsEl.childElementCount;
  }

  function askButton(el) {
    const actions = $(el, ".turn-actions");
    const button = make("button", "btn approve-all", gettext("Approve all"));
    button.type = "button";
    button.addEventListener("click", () => confirmAll(el));
    actions.replaceChildren(button);
  }

  function confirmAll(el) {
    const count = el.dataset.ids.split(",").length;
    const actions = $(el, ".turn-actions");
    const yes = make("button", "btn approve confirm-all", fmt(gettext("Yes, approve all %(count)s"), { count }));
    const no = make("button", "btn cancel-all", gettext("Cancel"));
    yes.type = no.type = "button";
    no.addEventListener("click", () => askButton(el));
    yes.addEventListener("click", () => approveAll(el));
    $(el, ".turn-msg").textContent = gettext("Each one is decided on its own, with its rule's checks.");
    actions.replaceChildren(yes, no);
    yes.focus();
  }

  async function approveAll(el) {
    el.classList.add("is-busy");
    const msg = $(el, ".turn-msg");
    msg.textContent = gettext("Approving…");
    let answer;
    try {
      answer = await post(root.dataset.approveAllUrl, { ids: el.dataset.ids, confirmed: "1" });
    } catch {
      el.classList.remove("is-busy");
      msg.textContent = gettext("Could not reach Countersign. Check the connection and try again.");
      askButton(el);
      return;
    }
    el.classList.remove("is-busy");
    if (!answer.response.ok) {
      msg.textContent = answer.data.error || gettext("Something went wrong. Try again.");
      askButton(el);
      return;
    }
    const ul = $(el, ".turn-list");
    ul.replaceChildren();
    for (const result of answer.data.results) {
      const req = result.request;
      const text = result.ok
        ? req.status === "pending"
          ? fmt(gettext("%(tool)s: your approval is counted, another person must approve too"), { tool: req.tool_title })
          : fmt(gettext("%(tool)s: approved"), { tool: req.tool_title })
        : fmt(gettext("%(tool)s: not approved: %(why)s"), { tool: req.tool_title, why: result.error });
      ul.append(make("li", result.ok ? "ok" : "not-ok", text));
    }
    msg.textContent = "";
    $(el, ".turn-actions").replaceChildren();
    el.classList.add("is-done");
    setTimeout(() => {
      el.remove();
      drawTurns();
    }, 8000);
  }

  // ---------------------------------------------------------------- the grants panel

  const panel = document.getElementById("grants-panel");
  const list = document.getElementById("grants-list");

  let refreshing = null;
  async function refresh() {
    if (!panel || refreshing) return;
    refreshing = (async () => {
      try {
        const response = await fetch(root.dataset.grantsUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (response.ok) drawGrants((await response.json()).grants);
      } catch {
        /* offline: the next change or reconnect re-reads it */
      }
    })();
    await refreshing;
    refreshing = null;
  }

  function drawGrants(grants) {
    list.replaceChildren();
    for (const grant of grants) {
      const li = make("li", "grant");
      li.dataset.id = String(grant.id);
      const where = fmt(gettext("%(session)s · by %(name)s · used %(count)s×"), {
        session: grant.session_label,
        name: grant.created_by_label,
        count: grant.used_count,
      });
      li.append(make("strong", "grant-what", grant.description), make("span", "muted grant-where", where));
      const revoke = make("button", "btn-link revoke", gettext("Revoke"));
      revoke.type = "button";
      revoke.addEventListener("click", async () => {
        revoke.disabled = true;
        const { response, data } = await post(root.dataset.revokeUrl.replace("/0/", `/${grant.id}/`), {});
        if (!response.ok) {
          revoke.disabled = false;
          li.append(make("span", "bad-text", data.error || gettext("Could not revoke it.")));
          return;
        }
        refresh();
      });
      li.append(revoke);
      list.append(li);
    }
    panel.hidden = !grants.length;
  }

  // A card that closes or leaves changes the turns listed above the queue.
  const queue = document.getElementById("queue");
  if (queue) new MutationObserver(renderTurn).observe(queue, { childList: true, subtree: true, attributeFilter: ["class"] });

  window.countersignGrants = { render, fields, refresh, edited };
  refresh();
})();
