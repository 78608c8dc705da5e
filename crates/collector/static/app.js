// kandji-collector console: the viewer's local time on hover, and copy buttons. The pages
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
  function enhance(root) { localise(root); copyButtons(root); }
  document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  // Fragments htmx swaps in (the status regions).
  document.addEventListener("htmx:load", function (e) {
    if (e.detail && e.detail.elt && e.detail.elt.querySelectorAll) enhance(e.detail.elt);
  });
})();
