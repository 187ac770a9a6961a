// Infinite scroll for the explorer's grid: when the "more" marker comes into view, fetch the
// next keyset page of tiles (server-rendered HTML, same origin) and append it to the grid.
// The next page's URL comes back in X-Next-Page; an empty one means this was the last page.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const grid = document.getElementById("grid");
  const more = document.getElementById("more");
  if (!grid || !more || !("IntersectionObserver" in window)) return;
  let busy = false;
  const load = async () => {
    const next = more.dataset.next;
    if (busy || !next) return;
    busy = true;
    try {
      const response = await fetch(next, {credentials: "same-origin"});
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const page = document.createElement("template");
      page.innerHTML = await response.text();
      grid.append(page.content);
      more.dataset.next = response.headers.get("X-Next-Page") || "";
      if (!more.dataset.next) { observer.disconnect(); more.remove(); }
    } catch (err) {
      more.textContent = `could not load more: ${err.message}`;
      observer.disconnect();
    } finally {
      busy = false;
    }
    if (more.isConnected && more.getBoundingClientRect().top < window.innerHeight) load();
  };
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) load();
  }, {rootMargin: "400px"});
  observer.observe(more);
});
