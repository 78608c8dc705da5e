// kandji-collector console: the viewer's local time on hover, copy buttons and tabs. The pages
// work without this file; it only adds to them. No inline script (CSP script-src 'self').
(function () {
  "use strict";
  function zone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return ""; }
  }
  function localise(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d.getTime())) {
        t.title = d.toLocaleString() + (zone() ? " (" + zone() + ")" : "");
      }
    });
  }
  function copyButtons(root) {
    root.querySelectorAll("button[data-copy]").forEach(function (b) {
      if (b.dataset.ready) return;
      b.dataset.ready = "1";
      b.hidden = false;
      b.addEventListener("click", function () {
        var src = document.getElementById(b.dataset.copy);
        if (!src || !navigator.clipboard) return;
        navigator.clipboard.writeText(src.textContent).then(function () {
          b.textContent = "Copied";
        }, function () {
          b.textContent = "Copy failed: select the text instead";
        });
      });
    });
  }
  // Tabs: switch panels in place (typed values stay), keep ?tab= in the address so a reload
  // or a shared link opens the same tab; arrow keys move between tabs.
  function tabs(root) {
    root.querySelectorAll("[data-tabs]").forEach(function (list) {
      if (list.dataset.ready) return;
      list.dataset.ready = "1";
      var all = Array.prototype.slice.call(list.querySelectorAll("[role=tab]"));
      function show(tab, focus) {
        all.forEach(function (t) {
          var on = t === tab;
          t.setAttribute("aria-selected", on ? "true" : "false");
          t.classList.toggle("current", on);
          t.tabIndex = on ? 0 : -1;
          var panel = document.getElementById(t.getAttribute("aria-controls"));
          if (panel) panel.hidden = !on;
        });
        if (focus) tab.focus();
        try {
          var u = new URL(window.location.href);
          u.searchParams.set("tab", tab.id.replace(/^tab-/, ""));
          u.searchParams.delete("saved");
          window.history.replaceState(null, "", u.toString());
        } catch (e) { /* an old browser keeps the address */ }
      }
      all.forEach(function (t, i) {
        t.tabIndex = t.getAttribute("aria-selected") === "true" ? 0 : -1;
        t.addEventListener("click", function (e) { e.preventDefault(); show(t, false); });
        t.addEventListener("keydown", function (e) {
          var k = e.key, n = all.length;
          var j = k === "ArrowRight" ? (i + 1) % n : k === "ArrowLeft" ? (i + n - 1) % n
            : k === "Home" ? 0 : k === "End" ? n - 1 : -1;
          if (j >= 0) { e.preventDefault(); show(all[j], true); }
          else if (k === " ") { e.preventDefault(); show(t, false); }
        });
      });
    });
  }
  function enhance(root) { localise(root); copyButtons(root); tabs(root); }
  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  // Fragments htmx swaps in (the status regions).
  document.addEventListener("htmx:load", function (e) {
    if (e.detail && e.detail.elt && e.detail.elt.querySelectorAll) enhance(e.detail.elt);
  });
})();
