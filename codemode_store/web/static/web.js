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
    var busy = false;

    function say(text) { if (status) { status.textContent = text; } }

    function refresh() {
      if (busy || document.hidden || (toggle && !toggle.checked)) { return; }
      busy = true;
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
          if (!document.querySelector(REFRESHING)) { window.clearInterval(timer); }
        })
        .catch(function (error) { say("not updated: " + error.message); })
        .then(function () { busy = false; });
    }

    var timer = window.setInterval(refresh, seconds * 1000);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
