/* What a rule asks of a decision, on the dashboard's cards (docs/policies.md, "What a decision
 * needs"): a confirmation, a note to the guest to approve or to deny, a passkey step-up; and the
 * two notes of every decision (to the guest, read out by the assistant; internal, audit only).
 *
 * dashboard.js calls, for each card:
 *   countersignRules.render(card, req)   after filling it: the notes' fields and what is required;
 *   countersignRules.prepare(card, req, decision, {viaKey}) before POSTing a decision: resolves
 *     to the extra form fields ({internal_note, confirmed, step_up}) or to null (abort: the
 *     person cancelled, or something required is missing and the card says what).
 * A key press (A or D) always asks to confirm first, inline on the card (Enter or Y: yes, Esc:
 * no): one key must never decide alone. A click asks only when the rule requires it.
 * The server checks all of it again (services.decide): this only spares a round trip.
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
  const stepUpUrl = (id) => root.dataset.stepUpUrl.replace("/0/", `/${id}/`);
  const webauthn = () => window.Countersign && window.Countersign.webauthn;

  const NOTHING = { confirm: false, reason_on_approve: false, reason_on_deny: false, step_up: false };
  const requiresOf = (req) => ({ ...NOTHING, ...(req && req.requires) });

  const $ = (el, sel) => el.querySelector(sel);
  const make = (tag, className, text) => {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const say = (card, text, kind) => {
    const msg = $(card, ".msg");
    msg.textContent = text || "";
    msg.className = `msg ${kind || ""}`;
  };

  // ------------------------------------------------------------------ the card's fields

  function noteFields(card) {
    const form = $(card, "form.decide");
    let internal = $(card, ".internal-note");
    if (!internal) {
      // The existing reason field is the note to the guest; the internal note goes beside it.
      const label = make("label", "internal-label");
      label.append(
        document.createTextNode(`${gettext("Internal note")} `),
        make("span", "opt", gettext("(optional, audit only: never told to the guest)")),
      );
      internal = make("input", "internal-note");
      internal.type = "text";
      internal.name = "internal_note";
      internal.maxLength = Number(root.dataset.maxInternalNote || 2000);
      label.append(internal);
      form.insertBefore(label, $(form, ".buttons"));
      const guestLabel = $(card, ".reason-label");
      if (guestLabel && guestLabel.firstChild && guestLabel.firstChild.nodeType === Node.TEXT_NODE) {
        guestLabel.firstChild.textContent = `${gettext("Note to the guest")} `;
      }
    }
    return { guest: $(card, ".reason"), internal };
  }

  function render(card, req) {
    const requires = requiresOf(req);
    const { guest } = noteFields(card);
    const opt = $(card, ".reason-label .opt");
    let needs;
    if (requires.reason_on_approve && requires.reason_on_deny) needs = gettext("(required: the assistant may read it out)");
    else if (requires.reason_on_approve) needs = gettext("(required to approve: the assistant may read it out)");
    else if (requires.reason_on_deny) needs = gettext("(required to deny: the assistant may read it out)");
    else needs = gettext("(optional: the assistant may read it out)");
    if (opt) opt.textContent = needs;
    guest.required = requires.reason_on_approve && requires.reason_on_deny;
    guest.setAttribute("aria-required", String(requires.reason_on_approve || requires.reason_on_deny));
    card.classList.toggle("needs-step-up", requires.step_up);
    let line = $(card, ".requires-line");
    const parts = [];
    if (requires.confirm) parts.push(gettext("a confirmation"));
    if (requires.reason_on_approve && requires.reason_on_deny) parts.push(gettext("a note to the guest"));
    else if (requires.reason_on_approve) parts.push(gettext("a note to the guest to approve"));
    else if (requires.reason_on_deny) parts.push(gettext("a note to the guest to deny"));
    if (requires.step_up) parts.push(gettext("your passkey"));
    if (!parts.length) {
      if (line) line.remove();
      return;
    }
    if (!line) {
      line = make("p", "requires-line");
      $(card, "form.decide").before(line);
    }
    line.textContent = fmt(gettext("This rule needs %(what)s to decide."), { what: parts.join(", ") });
  }

  // ------------------------------------------------------------------ the inline confirmation

  function confirmInline(card, req, decision) {
    const existing = $(card, ".confirm-bar");
    if (existing) existing.remove();
    return new Promise((resolve) => {
      const bar = make("div", `confirm-bar is-${decision}`);
      bar.setAttribute("role", "alertdialog");
      const question =
        decision === "approve"
          ? fmt(gettext("Approve %(tool)s for %(session)s?"), { tool: req.tool_title, session: req.session.label })
          : fmt(gettext("Deny %(tool)s for %(session)s?"), { tool: req.tool_title, session: req.session.label });
      const text = make("span", "confirm-question", question);
      text.id = `confirm-q-${req.id}`;
      bar.setAttribute("aria-labelledby", text.id);
      const yes = make("button", `btn ${decision} confirm-yes`, decision === "approve" ? gettext("Yes, approve") : gettext("Yes, deny"));
      const no = make("button", "btn secondary confirm-no", gettext("Cancel"));
      yes.type = no.type = "button";
      const keys = make("span", "hint", gettext("Enter or Y: yes · Esc: no"));
      bar.append(text, yes, no, keys);
      const done = (answer) => {
        bar.remove();
        if (!answer) card.focus({ preventScroll: true });
        resolve(answer);
      };
      yes.addEventListener("click", () => done(true));
      no.addEventListener("click", () => done(false));
      bar.addEventListener("keydown", (event) => {
        const key = event.key.toLowerCase();
        // Handled here, so that the dashboard's own keys (A, D, J, K) do nothing meanwhile.
        event.preventDefault();
        event.stopPropagation();
        if (key === "enter" || key === "y") done(true);
        else if (key === "escape" || key === "n") done(false);
        else if (key === "tab") (document.activeElement === yes ? no : yes).focus();
      });
      $(card, "form.decide").after(bar);
      yes.focus({ preventScroll: true });
    });
  }

  // ------------------------------------------------------------------ the step-up

  async function stepUp(card, req) {
    const api = webauthn();
    if (!api || !api.supported()) {
      say(card, gettext("This rule needs your passkey, and this browser cannot use passkeys."), "error");
      return null;
    }
    say(card, gettext("Confirm with your passkey…"), "");
    let data = {};
    let response;
    try {
      response = await fetch(stepUpUrl(req.id), {
        method: "POST",
        headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
        credentials: "same-origin",
      });
      data = await response.json().catch(() => ({}));
    } catch {
      say(card, gettext("Could not reach Countersign. Check the connection and try again."), "error");
      return null;
    }
    if (!response.ok) {
      say(card, data.error || gettext("The passkey prompt could not be prepared."), "error");
      if (data.passkeys_url) {
        const link = make("a", "", gettext("Register a passkey"));
        link.href = data.passkeys_url;
        $(card, ".msg").append(" ", link);
      }
      return null;
    }
    try {
      return JSON.stringify(await api.get(data.options));
    } catch (error) {
      const cancelled = error && error.name === "NotAllowedError";
      say(card, cancelled ? gettext("Cancelled: the passkey did not confirm the decision.") : String(error.message || error), "error");
      return null;
    }
  }

  // ------------------------------------------------------------------ before a decision

  async function prepare(card, req, decision, options) {
    const viaKey = Boolean(options && options.viaKey);
    const requires = requiresOf(req);
    const { guest, internal } = noteFields(card);
    const needsNote = decision === "approve" ? requires.reason_on_approve : requires.reason_on_deny;
    if (needsNote && !guest.value.trim()) {
      say(
        card,
        decision === "approve"
          ? gettext("This rule needs a note to the guest to approve: say why.")
          : gettext("This rule needs a note to the guest to deny: say why."),
        "error",
      );
      guest.focus();
      return null;
    }
    const extra = { internal_note: internal.value.trim() };
    if (viaKey || requires.confirm) {
      if (!(await confirmInline(card, req, decision))) {
        say(card, gettext("Not decided."), "");
        return null;
      }
      extra.confirmed = "1";
    }
    if (requires.step_up) {
      const assertion = await stepUp(card, req);
      if (!assertion) return null;
      extra.step_up = assertion;
    }
    return extra;
  }

  window.countersignRules = { prepare, render };
})();
