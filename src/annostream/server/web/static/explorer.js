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

// The frame scrubber of a video's page: the slider, the buttons and the arrow keys pick a
// frame; its picture comes from the frame route (immutable, so the browser caches it) and
// the instances drawn are those whose data-frame is that frame (the server drew them all,
// the others carry the class "off"; a track's interpolated boxes show only while the
// "interpolate" box is ticked). Once the frame's picture has loaded, the SVG says which frame
// it shows in data-shown. Under the slider, a video's events are bars over their frames
// (the server's SVG); those covering the frame shown carry "on", and a click on one goes to
// its first frame.
document.addEventListener("DOMContentLoaded", () => {
  const scrubber = document.getElementById("scrubber");
  const svg = document.querySelector("#picture svg.overlay");
  if (!scrubber || !svg) return;
  const image = svg.querySelector("image");
  const range = document.getElementById("frame");
  const timeline = document.getElementById("timeline");
  const last = Number(range.max);
  let wanted = Number(range.value);
  const show = (k) => {
    k = Math.max(0, Math.min(last, k));
    wanted = k;
    range.value = String(k);
    document.getElementById("frame-number").textContent = String(k);
    let drawn = 0;
    svg.querySelectorAll(".inst[data-frame]").forEach((el) => {
      const on = Number(el.dataset.frame) === k;
      el.classList.toggle("off", !on);
      if (on && !el.classList.contains("interpolated")) drawn += 1;
    });
    document.getElementById("frame-instances").textContent = String(drawn);
    document.querySelectorAll("#instances tr[data-frame]").forEach((row) => {
      row.classList.toggle("current", Number(row.dataset.frame) === k);
    });
    if (timeline) {
      let covering = 0;
      timeline.querySelectorAll(".event").forEach((bar) => {
        const on = Number(bar.dataset.start) <= k && k <= Number(bar.dataset.end);
        bar.classList.toggle("on", on);
        if (on) covering += 1;
      });
      const cursor = timeline.querySelector(".cursor");
      cursor.setAttribute("x1", String(k + 0.5));
      cursor.setAttribute("x2", String(k + 0.5));
      document.getElementById("frame-events").textContent = String(covering);
    }
    const src = scrubber.dataset.src + k;
    delete svg.dataset.shown;
    const loader = new Image();
    loader.onload = () => {
      if (wanted !== k) return;
      image.setAttribute("href", src);
      scrubber.classList.remove("failed");
      svg.dataset.shown = String(k);
    };
    loader.onerror = () => { if (wanted === k) scrubber.classList.add("failed"); };
    loader.src = src;
    const here = new URL(window.location.href);
    here.searchParams.set("frame", String(k));
    window.history.replaceState(null, "", here);
  };
  const interpolate = document.getElementById("interpolate");
  if (interpolate) {
    interpolate.addEventListener("change", () => svg.classList.toggle("interpolating", interpolate.checked));
  }
  range.addEventListener("input", () => show(Number(range.value)));
  if (timeline) {
    timeline.querySelectorAll(".event").forEach((bar) => {
      bar.addEventListener("click", () => show(Number(bar.dataset.start)));
    });
  }
  document.getElementById("frame-prev").addEventListener("click", () => show(wanted - 1));
  document.getElementById("frame-next").addEventListener("click", () => show(wanted + 1));
  show(wanted);
});
