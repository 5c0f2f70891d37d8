/* Countersign's formats in the browser, the same as the server's (approvals_extras: when, money):
 * times in the server's TIME_ZONE with the zone's abbreviation, whatever zone this device is in,
 * and amounts by currency in the page's language.
 *
 * <body data-time-zone="Europe/Berlin" data-time-zone-names='{"GMT+1": "CET", "GMT+2": "CEST"}'>:
 * Intl names most zones by their offset ("GMT+1"); the server's names for this year's offsets turn
 * that into the abbreviation the server writes ("CET").
 */
(() => {
  "use strict";

  const body = document.body;
  const zone = body.dataset.timeZone || "UTC";
  let zoneNames = {};
  try {
    zoneNames = JSON.parse(body.dataset.timeZoneNames || "{}");
  } catch {
    /* the offset itself then names the zone */
  }
  const lang = document.documentElement.lang || "en";

  let parts;
  try {
    parts = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
      timeZoneName: "shortOffset",
    });
  } catch {
    parts = null; // an unknown zone or an old browser: ISO in UTC below
  }

  // Browsers write a zero offset "GMT" or "GMT+0"; the server's names use "GMT".
  const offsetName = (name) => String(name).replace(/^GMT[+-]0(?::00)?$/, "GMT");

  function pieces(date) {
    if (!parts) {
      const iso = date.toISOString();
      return { date: iso.slice(0, 10), time: iso.slice(11, 19), zone: "UTC" };
    }
    const p = {};
    for (const { type, value } of parts.formatToParts(date)) p[type] = value;
    return {
      date: `${p.year}-${p.month}-${p.day}`,
      time: `${p.hour}:${p.minute}:${p.second}`,
      zone: zoneNames[offsetName(p.timeZoneName)] || p.timeZoneName,
    };
  }

  // "14:05:09 CET" (style "time", the default) or "2025-03-04 14:05:09 CET" ("full").
  function when(value, style) {
    if (!value) return "";
    const date = value instanceof Date ? value : new Date(value);
    if (Number.isNaN(date.getTime())) return "";
    const p = pieces(date);
    return style === "full" ? `${p.date} ${p.time} ${p.zone}` : `${p.time} ${p.zone}`;
  }

  // 20, "EUR" → "€20.00" in English, "20,00 €" in German; null when it is not an amount.
  function money(amount, currency) {
    const number = typeof amount === "string" && amount.trim() !== "" ? Number(amount) : amount;
    if (typeof number !== "number" || !Number.isFinite(number)) return null;
    if (typeof currency !== "string" || !/^[A-Za-z]{3}$/.test(currency)) return null;
    try {
      return new Intl.NumberFormat(lang, { style: "currency", currency: currency.toUpperCase() }).format(number);
    } catch {
      return null;
    }
  }

  window.Countersign = Object.assign(window.Countersign || {}, { format: { when, money, zone } });

  // The language picker sends itself (base.html keeps a button in <noscript> for no script).
  for (const select of document.querySelectorAll(".lang-switch select")) {
    select.addEventListener("change", () => select.form.requestSubmit());
  }
})();
