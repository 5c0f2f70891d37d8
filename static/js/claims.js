/* Countersign staff dashboard: coordination between the people on shift (issue 13).
 *
 * - Claims: "I'm on it" on a card (and implicitly when someone opens its details or starts a
 *   reason), shown on every dashboard that sees the card as "Mia is on it, 0:12". Advisory:
 *   anyone allowed may still decide. The server releases a claim on a decision, when the
 *   claimer's last dashboard closes, or after CLAIM_SECONDS.
 * - What you were typing is kept: when a colleague decides (or the request escalates) while
 *   you type a reason, the stamped card shows your text with a copy button.
 * - Presence: who of your groups has a dashboard open now.
 * - The next step: "to managers in 0:30" when the deadline escalates.
 *
 * Loaded before dashboard.js, which calls Countersign.coord.init(ctx) with its helpers and
 * then these functions at its few hook points. Values from the server go in as text only.
 */
(() => {
  "use strict";

  const gettext = window.gettext || ((text) => text);
  const interpolate =
    window.interpolate || ((text, values) => text.replace(/%\((\w+)\)s/g, (_, name) => String(values[name])));
  const fmt = (text, values) => interpolate(text, values, true);

  function init(ctx) {
    // ctx: {root, csrfToken, userId, $, setText, make, formatSeconds, showMessage, cards}
    const { root, csrfToken, userId, $, setText, make, formatSeconds, showMessage, cards } = ctx;
    const presenceEl = document.getElementById("presence");
    const claimUrl = (id, action) => root.dataset.claimUrl.replace("/0/", `/${id}/`).replace(/claim\/$/, `${action}/`);

    const groupNames = (groups) => (groups && groups.length ? groups.join(gettext(" or ")) : gettext("any staff member"));

    async function post(id, action, implicit) {
      const body = new URLSearchParams();
      if (implicit) body.set("implicit", "1");
      let response;
      try {
        response = await fetch(claimUrl(id, action), {
          method: "POST",
          headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
          credentials: "same-origin",
          body,
        });
      } catch {
        return { ok: false, data: { error: gettext("Could not reach Countersign. Check the connection and try again.") } };
      }
      const data = await response.json().catch(() => ({}));
      return { ok: response.ok, status: response.status, data };
    }

    async function claim(id, implicit) {
      const entry = cards.get(id);
      if (!entry || entry.done) return;
      const mine = entry.req.claim && String(entry.req.claim.user_id) === userId;
      if (mine) return;
      if (implicit && entry.req.claim) return; // a colleague is on it: opening the card is no claim
      const { ok, data } = await post(id, "claim", implicit);
      const current = cards.get(id);
      if (!current || current.done) return;
      if (data.request && data.request.status === "pending") {
        current.req = { ...current.req, claim: data.request.claim };
        renderClaim(current);
      }
      if (!ok && !implicit) showMessage(current.el, data.error || gettext("Could not claim this request."), "error");
    }

    async function release(id) {
      const { data } = await post(id, "release", false);
      const entry = cards.get(id);
      if (entry && !entry.done && data.request && data.request.status === "pending") {
        entry.req = { ...entry.req, claim: data.request.claim };
        renderClaim(entry);
      }
    }

    // A new card: its buttons, and the implicit claim (details opened, a reason started).
    function setup(entry) {
      const el = entry.el;
      const id = Number(el.dataset.id);
      $(el, ".claim").addEventListener("click", () => claim(id, false));
      $(el, ".release").addEventListener("click", () => release(id));
      for (const details of el.querySelectorAll("details")) {
        details.addEventListener("toggle", () => {
          // The conversation opens by itself on a wide screen; only a person's click counts.
          if (details.open && details.dataset.touched) claim(id, true);
        });
        $(details, "summary").addEventListener("click", () => {
          details.dataset.touched = "1";
        });
      }
      $(el, ".reason").addEventListener("focus", () => claim(id, true));
      $(el, ".copy-kept").addEventListener("click", async () => {
        const text = $(el, ".kept-text").textContent;
        try {
          await navigator.clipboard.writeText(text);
          setText(el, ".copy-kept", gettext("Copied"));
        } catch {
          // No clipboard (http, or refused): select the text so that Ctrl+C copies it.
          const range = document.createRange();
          range.selectNodeContents($(el, ".kept-text"));
          const selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
        }
      });
    }

    // The claim as the server last said it; the counter is advanced by tick().
    function renderClaim(entry) {
      const el = entry.el;
      const c = entry.req.status === "pending" ? entry.req.claim : null;
      entry.claimStart = c ? performance.now() - (c.seconds || 0) * 1000 : 0;
      const mine = !!c && String(c.user_id) === userId;
      el.classList.toggle("is-claimed", !!c);
      el.classList.toggle("is-mine", mine);
      $(el, ".claim").hidden = !!c || entry.done;
      $(el, ".release").hidden = !mine || entry.done;
      tickClaim(entry, performance.now());
    }

    function tickClaim(entry, now) {
      const el = entry.el;
      const c = entry.done ? null : entry.req.claim;
      if (!c) {
        setText(el, ".claim-text", "");
        return;
      }
      const since = formatClock((now - entry.claimStart) / 1000);
      const mine = String(c.user_id) === userId;
      setText(
        el,
        ".claim-text",
        mine ? fmt(gettext("You are on it, %(since)s"), { since }) : fmt(gettext("%(name)s is on it, %(since)s"), { name: c.label, since }),
      );
    }

    // "0:12": a counter always in minutes and seconds, so that it reads as one.
    function formatClock(seconds) {
      const s = Math.max(0, Math.floor(seconds));
      return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    }

    // "to managers in 0:30": where the request goes when this step's deadline passes.
    function tickNextStep(entry, left) {
      const next = entry.done ? null : entry.req.next_step;
      setText(
        entry.el,
        ".next-step",
        next ? fmt(gettext("to %(groups)s in %(left)s"), { groups: groupNames(next.groups), left: formatSeconds(Math.max(0, left)) }) : "",
      );
    }

    // Called by closeCard before the card is stamped. `mine`: this page's own decision.
    // A reason typed here that did not go with the decision is kept, with who decided.
    function keepTyped(entry, req, { mine, escalated }) {
      const el = entry.el;
      const typed = $(el, ".reason").value.trim();
      if (!typed || mine) return false;
      const title = escalated
        ? fmt(gettext("Escalated to %(groups)s while you were typing"), { groups: groupNames(req.policy && req.policy.groups) })
        : fmt(gettext("Decided by %(name)s while you were typing"), { name: req.decided_by_label || gettext("the deadline") });
      setText(el, ".kept-title", title);
      setText(el, ".kept-text", typed);
      setText(el, ".copy-kept", gettext("Copy my text"));
      $(el, ".kept").hidden = false;
      return true;
    }

    function renderPresence(online) {
      if (!presenceEl) return;
      presenceEl.replaceChildren();
      const entries = Object.entries(online || {});
      for (const [group, names] of entries) {
        const li = make("li", "presence-group");
        li.dataset.group = group;
        const title = group ? fmt(gettext("Online in %(group)s:"), { group }) : gettext("Online:");
        li.append(make("span", "presence-title", title), document.createTextNode(" "));
        li.append(make("span", names.length ? "presence-names" : "presence-names muted", names.length ? names.join(", ") : gettext("nobody")));
        presenceEl.append(li);
      }
      presenceEl.hidden = entries.length === 0;
    }

    return { setup, renderClaim, tickClaim, tickNextStep, keepTyped, renderPresence };
  }

  window.Countersign = window.Countersign || {};
  window.Countersign.coord = { init };
})();
