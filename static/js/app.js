/* On every page: register the service worker (the app is installable and can receive push),
 * and on the queue open the card a notification or email links to (/?request=<id>). */
(() => {
  "use strict";
  if ("serviceWorker" in navigator && document.body.dataset.staff === "1") {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => {});
  }
  const id = new URLSearchParams(location.search).get("request");
  const queue = document.getElementById("queue");
  if (!id || !/^\d+$/.test(id) || !queue) return;
  function reveal() {
    const card = queue.querySelector(`.card[data-id="${id}"]`);
    if (!card) return false;
    card.classList.add("is-linked");
    card.scrollIntoView({ block: "center", behavior: "smooth" });
    card.focus({ preventScroll: true });
    return true;
  }
  if (reveal()) return;
  // The queue arrives over the WebSocket after the page: wait for the card (a while at most).
  const observer = new MutationObserver(() => reveal() && observer.disconnect());
  observer.observe(queue, { childList: true });
  setTimeout(() => observer.disconnect(), 30000);
})();
