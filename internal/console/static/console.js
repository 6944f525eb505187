// ehrbridge console: the only script, loaded from the binary ('self' in the
// Content-Security-Policy; no inline script anywhere). Everything works
// without it; it adds live updates and select-all.
(function () {
  "use strict";
  // Live regions: a container with data-live="/ui/..." is refreshed from
  // that address (the server renders the fragment) every 5 s.
  function live(el) {
    var state = document.getElementById("live-state");
    var busy = false;
    setInterval(function () {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(el.getAttribute("data-live"), { headers: { "X-Console-Fetch": "1" }, credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (r.status === 401) { window.location.href = "/ui/signin?next=" + encodeURIComponent(window.location.pathname); return null; }
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.text();
        })
        .then(function (html) {
          if (html === null) { return; }
          var doc = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html");
          el.replaceChildren.apply(el, Array.prototype.slice.call(doc.body.firstChild.childNodes));
          if (state) { state.textContent = "Live: updated " + new Date().toLocaleTimeString() + "."; }
        })
        .catch(function (e) { if (state) { state.textContent = "Live updates failed (" + e.message + "); retrying."; } })
        .then(function () { busy = false; });
    }, 5000);
  }
  // A checkbox with data-select-all="NAME" ticks every checkbox NAME.
  function selectAll(box) {
    box.addEventListener("change", function () {
      document.querySelectorAll('input[type=checkbox][name="' + box.getAttribute("data-select-all") + '"]').forEach(function (c) { c.checked = box.checked; });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(live);
    document.querySelectorAll("[data-select-all]").forEach(selectAll);
  });
})();
