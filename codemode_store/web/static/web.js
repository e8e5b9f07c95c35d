// codemode-store serve: refresh a page that shows live state, keeping the scroll place.
// The only script of the page; the Content-Security-Policy allows no other.
(function () {
  "use strict";
  var REFRESHING = "main[data-refresh]";

  function openDetails(root) {
    var open = [];
    root.querySelectorAll("details").forEach(function (d, i) { if (d.open) { open.push(i); } });
    return open;
  }

  function restoreDetails(root, open) {
    var all = root.querySelectorAll("details");
    open.forEach(function (i) { if (all[i]) { all[i].open = true; } });
  }

  function start() {
    var main = document.querySelector(REFRESHING);
    if (!main) { return; }
    var seconds = Number(main.getAttribute("data-refresh")) || 2;
    var toggle = document.getElementById("auto-refresh");
    var status = document.getElementById("refresh-status");

    function say(text) { if (status) { status.textContent = text; } }

    // A page that is slow to make (a sessions page summing huge sessions) is asked
    // for less often: never more than a tenth of the time goes to refreshing it.
    var wait = seconds * 1000;

    function later() { window.setTimeout(refresh, wait); }

    function refresh() {
      if (document.hidden || (toggle && !toggle.checked)) { later(); return; }
      var started = performance.now();
      fetch(window.location.href, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
          var current = document.querySelector("main");
          if (fresh && current && fresh.innerHTML !== current.innerHTML) {
            var x = window.scrollX, y = window.scrollY, open = openDetails(current);
            current.replaceWith(document.adoptNode(fresh));
            restoreDetails(fresh, open);
            window.scrollTo(x, y);
          }
          say("updated " + new Date().toLocaleTimeString());
          wait = Math.max(seconds * 1000, 10 * (performance.now() - started));
        })
        .catch(function (error) { say("not updated: " + error.message); })
        .then(function () {
          if (document.querySelector(REFRESHING)) { later(); }  // one chain of timers, never two
        });
    }

    later();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
