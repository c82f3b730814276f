/*
 * The live parts of the token page: the countdown of the current token, and a reload when the
 * current token changes (checked once a minute through api/status) or every ten minutes, to redraw
 * the timelines. The countdown runs on the server's clock: the browser's is corrected by the offset
 * between the two when the page was made.
 */
(function () {
  "use strict";
  var status = document.getElementById("pm-status");
  var countdown = document.getElementById("pm-countdown");
  var word = document.getElementById("pm-status-word");
  var serverNow = Date.parse(document.body.getAttribute("data-server-now") || "");
  var skewMs = isNaN(serverNow) ? 0 : serverNow - Date.now();

  function two(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function format(seconds) {
    var s = Math.floor(seconds);
    var hours = Math.floor(s / 3600);
    var minutes = Math.floor((s % 3600) / 60);
    return (hours ? hours + ":" + two(minutes) : String(minutes)) + ":" + two(s % 60);
  }

  function tick() {
    if (!countdown) return;
    var until = Date.parse(countdown.getAttribute("data-valid-until") || "");
    var left = isNaN(until) ? 0 : (until - (Date.now() + skewMs)) / 1000;
    if (left > 0) {
      countdown.textContent = format(left);
      countdown.setAttribute("data-seconds-left", String(Math.floor(left)));
    } else {
      countdown.textContent = "expired";
      countdown.setAttribute("data-seconds-left", "0");
      if (status && status.getAttribute("data-valid") === "true") {
        status.setAttribute("data-valid", "false");
        status.classList.remove("valid");
        status.classList.add("invalid");
        if (word) word.textContent = "No valid token";
      }
    }
    countdown.setAttribute("data-ticking", "true");
  }

  function checkForNewToken() {
    var shown = status ? status.getAttribute("data-fingerprint") || "" : "";
    window
      .fetch("api/status", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (!data) return;
        var now = data.current ? data.current.fingerprint : "";
        if (now !== shown) window.location.reload();
      })
      .catch(function () {
        /* the next check tries again */
      });
  }

  tick();
  window.setInterval(tick, 1000);
  window.setInterval(checkForNewToken, 60 * 1000);
  window.setTimeout(function () {
    window.location.reload();
  }, 10 * 60 * 1000);
})();
