/* Countersign staff dashboard: how a new request gets attention: a chime, and a browser
 * notification when the page is not in front. Preferences are kept per browser (localStorage).
 * Split out of dashboard.js, which calls Countersign.alerts.init(ctx) and then announce(). */
(() => {
  "use strict";

  const gettext = window.gettext || ((text) => text);
  const interpolate =
    window.interpolate || ((text, values) => text.replace(/%\((\w+)\)s/g, (_, name) => String(values[name])));
  const fmt = (text, values) => interpolate(text, values, true);

  function init(ctx) {
    // ctx: {soundBtn, notifyBtn, formatSeconds, cards}
    const { soundBtn, notifyBtn, formatSeconds, cards } = ctx;

    const store = {
      get(key, fallback) {
        try {
          const v = localStorage.getItem(`countersign.${key}`);
          return v === null ? fallback : v === "on";
        } catch {
          return fallback; // private mode: preferences last for this page only
        }
      },
      set(key, on) {
        try {
          localStorage.setItem(`countersign.${key}`, on ? "on" : "off");
        } catch {
          /* see get() */
        }
      },
    };

    const prefs = { sound: store.get("sound", true), notify: store.get("notify", false) };
    let audioCtx = null;

    function audio() {
      if (!audioCtx) {
        const Ctx = window.AudioContext || window.webkitAudioContext;
        if (!Ctx) return null;
        audioCtx = new Ctx();
      }
      if (audioCtx.state === "suspended") audioCtx.resume();
      return audioCtx;
    }
    // Browsers only let a page play sound after a gesture: unlock on the first one.
    for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, audio, { once: true, passive: true });

    function chime() {
      const ctx = audio();
      if (!ctx) return;
      const start = ctx.currentTime + 0.02;
      // Two rising notes (A5, E6), soft attack and decay: noticeable without being an alarm.
      [
        [880, 0],
        [1318.5, 0.16],
      ].forEach(([freq, offset]) => {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, start + offset);
        gain.gain.exponentialRampToValueAtTime(0.25, start + offset + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.6);
        osc.connect(gain).connect(ctx.destination);
        osc.start(start + offset);
        osc.stop(start + offset + 0.65);
      });
    }

    function notify(req) {
      if (!prefs.notify || !("Notification" in window) || Notification.permission !== "granted") return;
      if (document.visibilityState === "visible" && document.hasFocus()) return; // the page says it
      let n;
      try {
        n = new Notification(fmt(gettext("Approval needed: %(tool)s"), { tool: req.tool_title }), {
          body: fmt(gettext("%(session)s · %(left)s to decide"), { session: req.session.label, left: formatSeconds(req.seconds_left) }),
          tag: `countersign-${req.id}`,
        });
      } catch {
        return; // Android Chrome only allows notifications from a service worker: the sound still plays
      }
      n.onclick = () => {
        window.focus();
        const entry = cards.get(req.id);
        if (entry) entry.el.focus();
        n.close();
      };
    }

    function announce(requests) {
      if (!requests.length) return;
      if (prefs.sound) chime();
      for (const req of requests) notify(req);
    }

    function renderToggles() {
      soundBtn.setAttribute("aria-pressed", String(prefs.sound));
      soundBtn.textContent = prefs.sound ? gettext("Sound on") : gettext("Sound off");
      const supported = "Notification" in window;
      const blocked = supported && Notification.permission === "denied";
      notifyBtn.disabled = !supported;
      notifyBtn.setAttribute("aria-pressed", String(prefs.notify && !blocked));
      notifyBtn.textContent = !supported
        ? gettext("Notifications unavailable")
        : blocked
          ? gettext("Notifications blocked")
          : prefs.notify
            ? gettext("Notifications on")
            : gettext("Notifications off");
      if (blocked) notifyBtn.title = gettext("Notifications are blocked in this browser's site settings.");
    }

    soundBtn.addEventListener("click", () => {
      prefs.sound = !prefs.sound;
      store.set("sound", prefs.sound);
      renderToggles();
      if (prefs.sound) chime(); // a preview, so people know what to listen for
    });

    notifyBtn.addEventListener("click", async () => {
      if (!("Notification" in window)) return;
      if (!prefs.notify && Notification.permission === "default") {
        await Notification.requestPermission();
      }
      prefs.notify = !prefs.notify && Notification.permission === "granted";
      store.set("notify", prefs.notify);
      renderToggles();
    });
    renderToggles();

    return { announce };
  }

  window.Countersign = window.Countersign || {};
  window.Countersign.alerts = { init };
})();
